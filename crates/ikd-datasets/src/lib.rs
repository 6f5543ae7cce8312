//! # ikd-datasets
//!
//! Acquisition of the benchmark datasets of the ikd workspace (a Rust reproduction of
//! *Informative Knowledge Distillation for Image Anomaly Segmentation*, Cao et al.,
//! Knowledge-Based Systems 2022): MVTec AD, MVTec LOCO AD, MVTec AD 2, VisA, BTAD and
//! KolektorSDD, each described by a [`Manifest`] under `datasets/` at the workspace root
//! ([`DATASETS`]). Loading what it fetched is [`ikd_data`]'s job; a user who only loads folders
//! depends on `ikd-data` alone and compiles no TLS, tar, zip or xz.
//!
//! - [`manifest`]: where an archive comes from, its size and SHA-256, the counts it must hold.
//! - [`http`]: the resumable download (HTTP `Range` requests, progress bar).
//! - [`verify`]: size and SHA-256 before extraction; layout and counts after.
//! - [`extract`]: safe extraction of tar, tar.gz, tar.xz and zip.
//! - [`convert`]: VisA, BTAD, KolektorSDD, MVTec LOCO AD and MVTec AD 2 into MVTec AD layout.
//! - [`fetch`]: all of it, all or nothing ([`fetch_dataset`]), or an existing copy checked
//!   ([`ensure_dataset`]).
//!
//! ```
//! use ikd_datasets::{ensure_dataset, CategoryCounts, Counts, FetchOptions, Manifest};
//! let dir = tempfile::tempdir().unwrap();
//! let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
//!     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
//! ikd_data::synthetic::generate(&cfg, dir.path())?;
//! let counts = Counts { train: 4, test_good: 2, test_defect: 2 };
//! let m = Manifest { name: "toy".into(), url: "http://127.0.0.1:1/toy.tar.xz".into(),
//!     file_name: "toy.tar.xz".into(), sha256: "0".repeat(64), extract_dir: "toy".into(),
//!     totals: Some(counts),
//!     categories: vec![CategoryCounts { name: "carpet".into(), counts: Some(counts) }],
//!     ..Manifest::default() };
//! // An existing copy: checked against the manifest's counts, nothing downloaded.
//! let root = ensure_dataset(&m, Some(dir.path()), &dir.path().join("downloads"),
//!     &FetchOptions::default())?;
//! let carpet = ikd_data::Category::open(&root, "carpet")?;
//! assert_eq!(carpet.train.len(), 4);
//! # Ok::<(), ikd_datasets::DatasetError>(())
//! ```

/// The README's example, compiled as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod convert;
mod error;
pub mod extract;
pub mod fetch;
pub mod http;
pub mod manifest;
pub mod verify;

pub use convert::{KOLEKTOR_SEED, KOLEKTOR_TEST_SHARE};
pub use error::{DatasetError, Result};
pub use extract::{extract_archive, extract_tar_xz};
pub use fetch::{ensure_dataset, fetch_dataset, fetch_mvtec, FetchOptions};
pub use http::download_resumable;
pub use manifest::{
    manifest_path, ArchiveFormat, CategoryCounts, Conversion, Counts, LayoutDescription, Manifest,
    Marker, DATASETS, MARKER, MVTEC_URL_ENV,
};
pub use verify::{sha256_file, verify_extracted, verify_file};
