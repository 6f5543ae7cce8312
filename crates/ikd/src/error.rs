//! The engine's error type.

use std::path::{Path, PathBuf};

/// Everything that can go wrong in the engine; each variant names the file or setting at fault.
///
/// ```
/// let e = ikd::Error::bad_file(std::path::Path::new("x.png"), "not a PNG".into());
/// assert_eq!(e.to_string(), "x.png: not a PNG");
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
    /// A setting is invalid.
    #[error("invalid setting: {0}")]
    Config(String),
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
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
