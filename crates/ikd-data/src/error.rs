//! The error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading, preparing or generating a dataset.
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
    #[error("{}: {} of {defective} defective test images have no mask: {} (the first expected at {}); add their masks, remove every mask for image-level metrics only, or accept it (setting allow_missing_masks = true, MaskPolicy::AllowMissing)", dir.display(), images.len(), list_paths(images), expected.display())]
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
    /// A setting is out of its valid range: names the setting and the value.
    #[error("invalid setting {name} = {value}: {reason}")]
    Setting {
        /// The setting's name (the field of the configuration that holds it, e.g. `batch_size`).
        name: &'static str,
        /// The value given.
        value: String,
        /// What it must be.
        reason: String,
    },
    /// A function was called with an argument out of its valid range (a caller's mistake, not
    /// a user's setting).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An image could not be written.
    #[error("{}: cannot write image: {source}", path.display())]
    Encode {
        /// The file being written.
        path: PathBuf,
        /// The encoder's error.
        source: image::ImageError,
    },
    /// Something that cannot happen did (a thread that stopped, a value that does not
    /// serialise).
    #[error("internal error: {0}")]
    Internal(String),
    /// A destination already exists and is not ours to replace.
    #[error("{}: already exists and was not written by this tool; refusing to overwrite it", path.display())]
    AlreadyExists {
        /// The existing path.
        path: PathBuf,
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

impl DataError {
    /// The setting a user changes to get past this error, where there is one: the field name
    /// of the configuration (`batch_size`, `image_size`, ...), or `allow_missing_masks` for
    /// [`DataError::MissingMasks`]. A command-line tool maps it to its own flag.
    ///
    /// ```
    /// let e = ikd_data::DataError::Setting { name: "batch_size", value: "0".into(),
    ///     reason: "must be at least 1".into() };
    /// assert_eq!(e.setting(), Some("batch_size"));
    /// assert_eq!(e.to_string(), "invalid setting batch_size = 0: must be at least 1");
    /// ```
    pub fn setting(&self) -> Option<&'static str> {
        match self {
            DataError::Setting { name, .. } => Some(name),
            DataError::MissingMasks { .. } => Some("allow_missing_masks"),
            _ => None,
        }
    }
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
