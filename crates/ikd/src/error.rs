//! The engine's error type: one variant per kind of failure.

use std::path::{Path, PathBuf};

/// Everything that can go wrong in the engine, by kind; each variant names the file, the
/// setting or the run folder at fault.
///
/// ```
/// let e = ikd::Error::bad_file(std::path::Path::new("x.png"), "not a PNG".into());
/// assert_eq!(e.to_string(), "x.png: not a PNG");
/// let e = ikd::Error::setting("batch_size", 0, "must be at least 1");
/// assert_eq!(e.to_string(), "setting batch_size = 0: must be at least 1");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A file exists but its content is not what it should be.
    #[error("{}: {msg}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// A setting ([`crate::TrainConfig`]'s name, `loss.` for the loss's) has a value it cannot
    /// take. Programs with flags name their flag instead (`ikd` does).
    #[error("setting {setting} = {value}: {problem}")]
    Setting {
        /// The setting's name in [`crate::TrainConfig`] (`loss.beta` for a loss setting).
        setting: String,
        /// The value given, as written in `config.toml`.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The run folder is not in a state that allows what was asked (it holds another run, no
    /// run, an unfinished run, or a run with other settings).
    #[error("{}: {msg}", path.display())]
    RunState {
        /// The run folder.
        path: PathBuf,
        /// What state it is in, and the way on.
        msg: String,
    },
    /// Computing a metric failed.
    #[error("{context}: {source}")]
    Metrics {
        /// What was being measured (the metrics of a test, a test image).
        context: String,
        /// What the metrics said.
        source: ikd_metrics::MetricsError,
    },
    /// A broken invariant of the engine itself (a bug to report).
    #[error("internal error: {0}")]
    Internal(String),
    /// Training produced a non-finite loss.
    #[error("{0}")]
    NonFinite(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Building or loading a network failed.
    #[error(transparent)]
    Model(#[from] ikd_hrnet::Error),
    /// The loss rejected its input or state.
    #[error(transparent)]
    Loss(#[from] ikd_distill::DistillError),
    /// Reading a dataset failed.
    #[error(transparent)]
    Data(#[from] ikd_data::DataError),
}

impl From<ikd_io::Error> for Error {
    fn from(e: ikd_io::Error) -> Self {
        Error::Io { path: e.path, source: e.cause }
    }
}

impl Error {
    /// An I/O error on `path`.
    ///
    /// ```
    /// let e = ikd::Error::io(std::path::Path::new("a"), std::io::ErrorKind::NotFound.into());
    /// assert!(e.to_string().starts_with("a: "));
    /// ```
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), source }
    }

    /// A file whose content is wrong.
    ///
    /// ```
    /// let e = ikd::Error::bad_file(std::path::Path::new("m.tiff"), "two channels".into());
    /// assert!(e.to_string().contains("two channels"));
    /// ```
    pub fn bad_file(path: &Path, msg: String) -> Self {
        Error::BadFile { path: path.to_path_buf(), msg }
    }

    /// A setting with a value it cannot take.
    ///
    /// ```
    /// let e = ikd::Error::setting("image_size", 100, "must be a positive multiple of 32");
    /// assert!(matches!(&e, ikd::Error::Setting { setting, .. } if setting == "image_size"));
    /// ```
    pub fn setting(setting: &str, value: impl std::fmt::Display, problem: &str) -> Self {
        Error::Setting {
            setting: setting.to_string(),
            value: value.to_string(),
            problem: problem.to_string(),
        }
    }

    /// A run folder in the wrong state for what was asked.
    ///
    /// ```
    /// let e = ikd::Error::run_state(std::path::Path::new("runs/a"), "holds no run".into());
    /// assert_eq!(e.to_string(), "runs/a: holds no run");
    /// ```
    pub fn run_state(path: &Path, msg: String) -> Self {
        Error::RunState { path: path.to_path_buf(), msg }
    }

    /// A metric that could not be computed while measuring `context`.
    pub(crate) fn metrics(context: impl Into<String>, source: ikd_metrics::MetricsError) -> Self {
        Error::Metrics { context: context.into(), source }
    }
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
