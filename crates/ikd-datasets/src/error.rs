//! The error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while fetching, verifying, extracting or converting a dataset.
///
/// Every variant names the file, folder or URL concerned and what is wrong with it. Errors of
/// reading the dataset itself (its layout, its images) are [`ikd_data::DataError`]s, carried by
/// [`DatasetError::Data`].
///
/// ```
/// use ikd_datasets::DatasetError;
/// let e = DatasetError::ChecksumMismatch {
///     path: "data/visa.tar".into(),
///     expected: "ab".repeat(32),
///     found: "cd".repeat(32),
/// };
/// assert!(e.to_string().starts_with("data/visa.tar: SHA-256 mismatch"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// Reading the dataset (its layout, an image) failed.
    #[error(transparent)]
    Data(#[from] ikd_data::DataError),
    /// An I/O operation on a path failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A dataset name that has no manifest.
    #[error(
        "unknown dataset `{name}`: known are {known} (MPDD, KSDD2, DAGM and your own images: \
         folder mode, their normal, abnormal and mask folders read as they are)"
    )]
    UnknownDataset {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// A manifest file is unreadable or inconsistent.
    #[error("{}: invalid manifest: {message}", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An HTTP request failed.
    #[error("{url}: download failed: {message}")]
    Http {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A file's size is not the expected one.
    #[error("{}: expected {expected} bytes, found {found} bytes", path.display())]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// Expected size in bytes.
        expected: u64,
        /// Actual size in bytes.
        found: u64,
    },
    /// A file's SHA-256 is not the expected one.
    #[error("{}: SHA-256 mismatch: expected {expected}, found {found}", path.display())]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// Expected digest (hex).
        expected: String,
        /// Actual digest (hex).
        found: String,
    },
    /// A file is not an archive this crate extracts.
    #[error("{}: not a .tar, .tar.gz, .tar.xz or .zip archive", path.display())]
    NotAnArchive {
        /// The file.
        path: PathBuf,
    },
    /// An archive entry would land outside the extraction folder or is of a refused kind.
    #[error("{}: refusing archive entry `{entry}`: {reason}", archive.display())]
    UnsafeEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry's path as stored.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// An extracted dataset does not hold the expected number of files.
    #[error("{}: expected {expected} {what}, found {found}", path.display())]
    CountMismatch {
        /// The dataset or category folder.
        path: PathBuf,
        /// What was counted.
        what: String,
        /// Expected count.
        expected: usize,
        /// Actual count.
        found: usize,
    },
    /// A dataset's source does not have the layout its conversion expects, or an extracted
    /// folder is not the one the manifest describes.
    #[error("{}: {message}", path.display())]
    Layout {
        /// The file or folder concerned.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A converted image could not be written.
    #[error("{}: cannot write image: {source}", path.display())]
    ImageWrite {
        /// The file being written.
        path: PathBuf,
        /// The encoder's error.
        source: image::ImageError,
    },
}

/// The crate's result type.
///
/// ```
/// fn f() -> ikd_datasets::Result<u32> { Ok(1) }
/// assert_eq!(f().unwrap(), 1);
/// ```
pub type Result<T, E = DatasetError> = std::result::Result<T, E>;

/// Attaches a path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| DatasetError::Io { path: path.into(), source })
    }
}

impl From<ikd_io::Error> for DatasetError {
    fn from(e: ikd_io::Error) -> Self {
        DatasetError::Io { path: e.path, source: e.cause }
    }
}
