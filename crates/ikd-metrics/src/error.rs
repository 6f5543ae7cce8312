//! The one error type of the crate.

/// Everything that can go wrong when scoring anomaly maps.
///
/// Errors caused by one image name its index: the position of the image in the sequence given to
/// an [`Accumulator`](crate::Accumulator) (counted from the accumulator's first index, 0 unless set
/// with [`Accumulator::with_first_index`](crate::Accumulator::with_first_index)) or in the slice
/// given to a one-shot function such as [`evaluate`](crate::evaluate).
///
/// ```
/// use ikd_metrics::{pixel_auroc, MetricsError, Sample};
///
/// let scores = [0.1_f32, f32::NAN];
/// let mask = [0_u8, 1];
/// let err = pixel_auroc(&[Sample::new(&scores, &mask, 2, 1)]).unwrap_err();
/// assert_eq!(err, MetricsError::NonFiniteScore { image: 0, x: 1, y: 0, value: f32::NAN.to_string() });
/// assert!(err.to_string().contains("image 0"));
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// The score map or the mask does not hold `width * height` values.
    #[error(
        "image {image}: a {width}x{height} image needs {expected} values, but the score map has \
         {scores} and the mask {mask}"
    )]
    SizeMismatch {
        /// Index of the image.
        image: usize,
        /// Width given for the image.
        width: usize,
        /// Height given for the image.
        height: usize,
        /// `width * height` (saturating).
        expected: usize,
        /// Length of the score map.
        scores: usize,
        /// Length of the mask.
        mask: usize,
    },
    /// A mask given to [`label_components`](crate::label_components) does not hold
    /// `width * height` values.
    #[error("a {width}x{height} mask needs {expected} values, but it has {len}")]
    MaskSizeMismatch {
        /// Width given for the mask.
        width: usize,
        /// Height given for the mask.
        height: usize,
        /// `width * height` (saturating).
        expected: usize,
        /// Length of the mask.
        len: usize,
    },
    /// The image has no pixel (zero width or height).
    #[error("image {image}: the image is empty ({width}x{height})")]
    EmptyImage {
        /// Index of the image.
        image: usize,
        /// Width given for the image.
        width: usize,
        /// Height given for the image.
        height: usize,
    },
    /// The image has more than `u32::MAX` pixels (region sizes are kept as `u32`).
    #[error("image {image}: {pixels} pixels is more than the supported {max} per image")]
    ImageTooLarge {
        /// Index of the image.
        image: usize,
        /// Number of pixels of the image.
        pixels: usize,
        /// The largest supported number of pixels per image.
        max: usize,
    },
    /// A score is NaN or infinite.
    #[error("image {image}: the score at x {x}, y {y} is {value}, not a finite number")]
    NonFiniteScore {
        /// Index of the image.
        image: usize,
        /// Column of the first offending pixel.
        x: usize,
        /// Row of the first offending pixel.
        y: usize,
        /// The offending value, as text (`NaN`, `inf`, `-inf`) so that the error compares equal.
        value: String,
    },
    /// No image was given.
    #[error("no image was given")]
    NoImages,
    /// Not one pixel of any image is a defect: pixel metrics are undefined.
    #[error(
        "none of the {images} images has a defect pixel: pixel AUROC, AU-PRO, AP and F1 need at \
         least one"
    )]
    NoDefectPixel {
        /// Number of images seen.
        images: usize,
    },
    /// Every pixel of every image is a defect: pixel metrics are undefined.
    #[error(
        "none of the {images} images has a defect-free pixel: pixel AUROC, AU-PRO, AP and F1 need \
         at least one"
    )]
    NoDefectFreePixel {
        /// Number of images seen.
        images: usize,
    },
    /// Image AP and F1 need at least one defective image.
    #[error("none of the {images} images is defective: image AP and F1 need at least one")]
    NoDefectiveImage {
        /// Number of images.
        images: usize,
    },
    /// Image AUROC needs at least one image with and one without defects.
    #[error(
        "image AUROC needs images with and without defects, but {defective} of the {images} \
         images have defects"
    )]
    ImageAurocUndefined {
        /// Number of images.
        images: usize,
        /// Number of images with at least one defect pixel.
        defective: usize,
    },
    /// An image-level score given to [`image_auroc`](crate::image_auroc) is NaN or infinite.
    #[error("image {image}: the image score {value} is not a finite number")]
    NonFiniteImageScore {
        /// Index of the image.
        image: usize,
        /// The offending value, as text.
        value: String,
    },
    /// Two lists that must have one entry per image differ in length.
    #[error("{what}: {left} against {right} entries, but there must be one per image")]
    LengthMismatch {
        /// Which lists.
        what: &'static str,
        /// Length of the first list.
        left: usize,
        /// Length of the second list.
        right: usize,
    },
    /// IKD's PRO is undefined: every kept FPR is the same, so the min-max rescaling divides by zero
    /// (the published Python code returns NaN here).
    #[error(
        "IKD PRO is undefined: all {kept} thresholds with FPR <= {max_fpr} have the same FPR \
         {fpr}, so the FPR axis cannot be rescaled"
    )]
    IkdProUndefined {
        /// Number of thresholds kept.
        kept: usize,
        /// The FPR limit.
        max_fpr: f64,
        /// The one FPR value of all kept thresholds.
        fpr: f64,
    },
    /// A setting of [`MetricsConfig`](crate::MetricsConfig) is out of range.
    #[error("invalid metrics configuration: {0}")]
    InvalidConfig(String),
    /// [`Accumulator::merge`](crate::Accumulator::merge) was given accumulators with different
    /// configurations.
    #[error("cannot merge accumulators with different configurations")]
    ConfigMismatch,
}
