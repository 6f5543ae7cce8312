//! # ikd-hrnet
//!
//! The HRNet family (Wang et al., *Deep High-Resolution Representation Learning for Visual
//! Recognition*, TPAMI 2020) on [candle](https://github.com/huggingface/candle), built exactly as
//! timm's `HighResolutionNet` and loading timm's published weights by name. In IKD (Cao et al.,
//! *Informative Knowledge Distillation for Image Anomaly Segmentation*, KBS 2022) the frozen
//! ImageNet-pretrained HRNet-W32 is the teacher and an identical randomly initialised network
//! the student.
//!
//! - [`HrNetConfig`]: timm's cfg as a plain serde struct, with [`HrNetConfig::w18_small`],
//!   [`HrNetConfig::w18_small_v2`], [`HrNetConfig::w18`], [`HrNetConfig::w32`],
//!   [`HrNetConfig::w48`], [`HrNetConfig::by_name`] and [`HrNetConfig::from_json_file`].
//! - [`HrNet`]: `HrNet::new(&cfg, vb)`; [`HrNet::forward_t`] returns the four stage-4 branch
//!   maps, [`HrNet::ikd_features`] the same with branches 1..3 resized (bilinear,
//!   align_corners=true, differentiable) to branch 0's size. Its layers run on the CPU kernels
//!   of [`ikd_kernels`] (candle's ops on other devices and dtypes) as its [`KernelPolicy`]
//!   allows: every kernel by default, [`HrNet::with_kernel_policy`] to choose.
//! - [`BatchNorm2d`]: PyTorch's batch norm (training mode uses batch statistics and updates
//!   the running ones with momentum 0.1 and the unbiased variance).
//! - [`resize_bilinear_align_corners`], [`resize_bilinear_half_pixel`]: differentiable
//!   bilinear resizing as matmuls with interpolation matrices.
//! - Weights: [`load_timm`], [`save_safetensors`], [`trainable_vars`],
//!   [`HrNet::from_timm_file`], and [`fetch_timm_weights`] from the Hugging Face hub.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//! use ikd_hrnet::{HrNet, HrNetConfig};
//!
//! // A student at random init; a teacher would be `HrNet::from_timm_file(&cfg, path, &dev)`.
//! let cfg = HrNetConfig::w18_small();
//! let varmap = VarMap::new();
//! let student = HrNet::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
//! let x = Tensor::randn(0f32, 1., (2, 3, 64, 64), &Device::Cpu)?;
//! let feats = student.ikd_features(&x, true)?; // train mode
//! assert_eq!(feats.len(), 4);
//! assert!(feats.iter().all(|f| f.dims()[2..] == [16, 16]));
//! let loss = feats[1].sqr()?.mean_all()?;
//! let grads = loss.backward()?;
//! let params = ikd_hrnet::trainable_vars(&varmap); // no BatchNorm running statistics
//! assert!(params.iter().any(|v| grads.get(v.as_tensor()).is_some()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::PathBuf;

mod batch_norm;
mod config;
mod hub;
mod model;
mod resize;
mod weights;

pub use batch_norm::{BatchNorm2d, BN_EPS, BN_MOMENTUM};
pub use config::{BlockType, FuseMethod, HrNetConfig, StageConfig, CONFIG_NAMES};
pub use hub::{
    fetch_timm_weights, fetch_timm_weights_with, timm_repo_id, HubOptions, DEFAULT_TAG,
    WEIGHTS_FILE,
};
pub use ikd_kernels::KernelPolicy;
pub use model::HrNet;
pub use resize::{
    interpolation_matrix_align_corners, interpolation_matrix_half_pixel,
    resize_bilinear_align_corners, resize_bilinear_half_pixel, resize_with_matrices,
};
pub use weights::{
    is_running_stat, is_skipped_key, load_timm, load_timm_tensors, named_vars, read_safetensors,
    save_safetensors, trainable_vars, LoadReport, HEAD_PREFIXES,
};

/// Errors of this crate. Messages name the file or tensor concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A configuration is not valid JSON or not a timm HRNet cfg.
    #[error("{origin}: not an HRNet configuration: {source}")]
    Json {
        /// The file (or `<string>`).
        origin: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// A configuration describes no buildable network.
    #[error("invalid HRNet configuration: {0}")]
    Config(String),
    /// [`HrNetConfig::by_name`] got an unknown name.
    #[error("unknown HRNet configuration `{name}` (known: {known})")]
    UnknownConfig {
        /// The name asked for.
        name: String,
        /// The names known.
        known: String,
    },
    /// A safetensors file could not be read or written.
    #[error("{}: {source}", path.display())]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: candle_core::Error,
    },
    /// The model has a variable the checkpoint lacks.
    #[error("{file}: tensor `{name}` (shape {expected:?}) is missing from the checkpoint")]
    MissingTensor {
        /// The variable name (timm key).
        name: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The checkpoint.
        file: String,
    },
    /// A checkpoint tensor's shape differs from the model's.
    #[error("{file}: tensor `{name}` has shape {found:?} in the checkpoint but the model expects {expected:?}")]
    ShapeMismatch {
        /// The variable name (timm key).
        name: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The checkpoint's shape.
        found: Vec<usize>,
        /// The checkpoint.
        file: String,
    },
    /// The checkpoint has backbone tensors the model does not (another configuration?).
    #[error("{file}: {count} checkpoint tensor(s) unknown to the model (another configuration?), e.g. {first}")]
    UnexpectedTensors {
        /// How many.
        count: usize,
        /// The first few names.
        first: String,
        /// The checkpoint.
        file: String,
    },
    /// Offline (`HF_HUB_OFFLINE=1`) and the file is not in the hub cache.
    #[error(
        "`{file}` of hub repository `{repo}` is not in the hub cache {} and HF_HUB_OFFLINE is set: \
         unset HF_HUB_OFFLINE to download it, copy the hub cache of a machine that holds it into \
         that folder, or load a local timm safetensors file instead (ikd_hrnet::load_timm; in \
         ikd, the teacher_weights setting set to the file's path)",
        cache_dir.display()
    )]
    HubOffline {
        /// The repository id.
        repo: String,
        /// The file.
        file: String,
        /// The cache directory searched.
        cache_dir: PathBuf,
    },
    /// Talking to the hub failed.
    #[error(
        "hub repository `{repo}`: {message} (set HF_HUB_OFFLINE=1 to use only the cache, or load \
         a local timm safetensors file instead: ikd_hrnet::load_timm; in ikd, the teacher_weights \
         setting set to the file's path)"
    )]
    Hub {
        /// The repository id.
        repo: String,
        /// The cause.
        message: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The README's usage example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
