//! The error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong in `ikd-distill`.
///
/// Bad input (a wrong shape, a level that does not exist, a config that makes no sense, a state
/// that belongs to another config) is reported with an error that names the tensor or file and
/// what is wrong; nothing in this crate panics on bad input.
///
/// ```
/// use ikd_distill::{DistillError, IkdLossConfig};
///
/// let cfg = IkdLossConfig { weights: vec![1.0], ..IkdLossConfig::paper() };
/// let err = cfg.validate().unwrap_err();
/// assert!(matches!(err, DistillError::Config(_)));
/// assert!(err.to_string().contains("weights"));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum DistillError {
    /// The loss configuration is inconsistent (message says which field and why).
    #[error("invalid IKD loss config: {0}")]
    Config(String),

    /// A feature map (or pair of maps) has the wrong rank, shape, dtype or device.
    #[error("{what}: {msg}")]
    Input {
        /// Which tensor, e.g. `teacher level 1`.
        what: String,
        /// What is wrong with it.
        msg: String,
    },

    /// A configured level has no feature map in the slices passed to the loss.
    #[error("level {level} requested but only {teacher} teacher and {student} student feature maps were given")]
    MissingLevel {
        /// The requested level (index into the feature slices).
        level: usize,
        /// Number of teacher feature maps given.
        teacher: usize,
        /// Number of student feature maps given.
        student: usize,
    },

    /// The distances of a level are not finite (NaN/inf in the features); the loss state is left
    /// unchanged so that one bad batch does not poison the margins.
    #[error("level {level}: distance statistics are not finite (mean {mean}, std {std}); NaN or inf in the feature maps? The loss state was left unchanged")]
    NonFinite {
        /// The level whose distances are not finite.
        level: usize,
        /// Mean of the distances.
        mean: f64,
        /// Unbiased standard deviation of the distances.
        std: f64,
    },

    /// A loss state does not belong to the loss config it is restored into.
    #[error("loss state does not match the config: {0}")]
    StateMismatch(String),

    /// Reading or writing a state file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A state file is not valid JSON of an [`crate::IkdLossState`].
    #[error("{path}: not a valid IKD loss state: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },

    /// An error of the tensor library.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with [`DistillError`].
///
/// ```
/// fn check() -> ikd_distill::Result<()> {
///     ikd_distill::IkdLossConfig::paper().validate()
/// }
/// assert!(check().is_ok());
/// ```
pub type Result<T> = std::result::Result<T, DistillError>;
