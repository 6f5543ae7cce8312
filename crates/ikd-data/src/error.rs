//! The error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading, preparing, downloading or generating a dataset.
///
/// Every variant names the file or folder concerned and what is wrong with it.
///
/// ```
/// use ikd_data::DataError;
/// let e = DataError::EmptyTrain { path: "data/bottle/train/good".into() };
/// assert!(e.to_string().contains("data/bottle/train/good"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// An I/O operation on a path failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The requested category folder does not exist.
    #[error("category `{name}` not found: {} is not a folder", path.display())]
    MissingCategory {
        /// The category name.
        name: String,
        /// The folder that was looked for.
        path: PathBuf,
    },
    /// A folder the MVTec AD layout requires is missing.
    #[error("{}: missing folder (expected the MVTec AD layout <category>/train/good/*.png (or train/ok), test/<defect>/*.png, ground_truth/<defect>/<stem>_mask.png)", path.display())]
    MissingDir {
        /// The folder that is missing.
        path: PathBuf,
    },
    /// `train/good` holds no image.
    #[error("{}: no training images (the folder holds no image file)", path.display())]
    EmptyTrain {
        /// The `train/good` folder.
        path: PathBuf,
    },
    /// A file in an image folder is not an image (by its extension).
    #[error("{}: not an image file (expected one of .png, .jpg, .jpeg, .tif, .tiff, .bmp)", path.display())]
    NotAnImage {
        /// The offending file.
        path: PathBuf,
    },
    /// A file could not be decoded as an image.
    #[error("{}: cannot read image: {source}", path.display())]
    Decode {
        /// The offending file.
        path: PathBuf,
        /// The decoder's error.
        source: image::ImageError,
    },
    /// Some defective test images have a ground-truth mask and others do not.
    #[error("{}: {} of {defective} defective test images have no mask: {} (the first expected at {}); add their masks, remove every mask for image-level metrics only, or allow it with --allow-missing-masks", dir.display(), images.len(), list_paths(images), expected.display())]
    MissingMasks {
        /// The category folder.
        dir: PathBuf,
        /// Defective test images in all.
        defective: usize,
        /// The defective test images without a mask.
        images: Vec<PathBuf>,
        /// Where the first one's mask was expected.
        expected: PathBuf,
    },
    /// A mask pairs with no test image.
    #[error("{}: mask has no matching test image (expected {})", mask.display(), expected.display())]
    ExtraMask {
        /// The mask file.
        mask: PathBuf,
        /// The test image it would belong to.
        expected: PathBuf,
    },
    /// Two masks claim the same test image.
    #[error("{}: two masks for test image {} ({} and {})", first.display(), image.display(), first.display(), second.display())]
    DuplicateMask {
        /// The test image.
        image: PathBuf,
        /// One mask.
        first: PathBuf,
        /// The other mask.
        second: PathBuf,
    },
    /// A mask's size differs from its image's size.
    #[error("{}: mask is {mask_w}×{mask_h} but its image {} is {image_w}×{image_h}", mask.display(), image.display())]
    MaskSizeMismatch {
        /// The mask file.
        mask: PathBuf,
        /// The image file.
        image: PathBuf,
        /// Mask width.
        mask_w: u32,
        /// Mask height.
        mask_h: u32,
        /// Image width.
        image_w: u32,
        /// Image height.
        image_h: u32,
    },
    /// A parameter is out of its valid range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
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
    /// A destination already exists and is not ours to replace.
    #[error("{}: already exists and was not written by this tool; refusing to overwrite it", path.display())]
    AlreadyExists {
        /// The existing path.
        path: PathBuf,
    },
    /// A dataset's source does not have the layout its conversion expects.
    #[error("{}: {message}", path.display())]
    Layout {
        /// The file or folder concerned.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Up to ten paths, then how many more.
fn list_paths(paths: &[PathBuf]) -> String {
    let mut s: Vec<String> = paths.iter().take(10).map(|p| p.display().to_string()).collect();
    if paths.len() > 10 {
        s.push(format!("and {} more", paths.len() - 10));
    }
    s.join(", ")
}

/// The crate's result type.
///
/// ```
/// fn f() -> ikd_data::Result<u32> { Ok(1) }
/// assert_eq!(f().unwrap(), 1);
/// ```
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Attaches a path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl From<ikd_io::Error> for DataError {
    fn from(e: ikd_io::Error) -> Self {
        DataError::Io { path: e.path, source: e.cause }
    }
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| DataError::Io { path: path.into(), source })
    }
}
