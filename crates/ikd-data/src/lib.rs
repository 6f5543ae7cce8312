//! # ikd-data
//!
//! Datasets for the ikd workspace (a Rust reproduction of *Informative Knowledge Distillation for
//! Image Anomaly Segmentation*, Cao et al., Knowledge-Based Systems 2022):
//!
//! - [`Category`]: a category folder in MVTec AD layout (also MPDD, BTAD's `ok`/`ko`, the
//!   converted VisA, LOCO, AD 2 and Kolektor), listed in sorted order, masks paired by name and
//!   optional as a whole ([`MaskPolicy`]), errors that name the file.
//! - [`FolderSpec`]: your own images in plain folders (normal, abnormal, optional masks).
//! - [`Transform`]: the paper's preprocessing (PIL-compatible Lanczos resize, centre crop,
//!   ImageNet normalisation; nearest resize and binarisation for masks).
//! - [`Dataset`]: a split decoded and resized once, in parallel, held in memory, iterated in
//!   candle batches `(N, 3, H, W)` with masks `(N, 1, H, W)`, shuffled reproducibly per epoch.
//! - [`sha256_file`]: a file's SHA-256 (how a run identifies its teacher's weights).
//! - [`synthetic`]: a deterministic generator of inspection-like textures with defects and masks,
//!   the offline default.
//!
//! Fetching the benchmarks (manifests, verified download, extraction, conversions of VisA, BTAD,
//! KolektorSDD, MVTec LOCO AD and MVTec AD 2) is the crate `ikd-datasets`; this crate compiles no
//! TLS, tar, zip or xz.
//!
//! ```
//! use ikd_data::{synthetic, Category, Dataset, Order, Transform};
//! let dir = tempfile::tempdir().unwrap();
//! let cfg = synthetic::SyntheticConfig {
//!     categories: vec![synthetic::Texture::Carpet],
//!     image_size: 32, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0,
//! };
//! synthetic::generate(&cfg, dir.path())?;
//! let cat = Category::open(dir.path(), "carpet")?;
//! let t = Transform::new(32, 32)?;
//! let train = Dataset::train(&cat, &t, false)?;
//! let test = Dataset::test(&cat, &t, false)?;
//! let dev = candle_core::Device::Cpu;
//! for batch in train.batches(2, Order::Shuffled { seed: 0, epoch: 0 }, &dev)? {
//!     assert_eq!(batch?.images.dims(), &[2, 3, 32, 32]);
//! }
//! let b = test.batches(4, Order::Sequential, &dev)?.next().unwrap()?;
//! assert_eq!(b.masks.unwrap().dims(), &[4, 1, 32, 32]);
//! # Ok::<(), ikd_data::DataError>(())
//! ```

mod checksum;
mod dataset;
mod error;
pub mod folder;
mod image_io;
mod layout;
mod loader;
pub mod synthetic;
mod transform;

pub use checksum::sha256_file;
pub use dataset::{epoch_permutation, Batch, Batches, Dataset, Order, Split};
pub use error::{DataError, Result};
pub use folder::FolderSpec;
pub use image_io::{
    decode_image, image_dimensions, is_image_path, load_image, load_mask, load_rgb, to_luma_pil,
    to_rgb_pil, IMAGE_EXTENSIONS,
};
pub use layout::{
    list_categories, Category, Counts, MaskCoverage, MaskPolicy, TestItem, GOOD, MVTEC_CATEGORIES,
    NORMAL_NAMES,
};
pub use loader::{Epoch, Loader, LoaderOptions};
pub use synthetic::SyntheticConfig;
pub use transform::{
    center_crop, normalize_chw, resize_gray, resize_rgb, Filter, Transform, IMAGENET_MEAN,
    IMAGENET_STD,
};
