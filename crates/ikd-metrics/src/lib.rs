//! Exact, fast anomaly-segmentation metrics: pixel and image AUROC (with the ROC curve), MVTec
//! AD's AU-PRO (with its curve), IKD's published PRO, pixel average precision, F1-max, and
//! connected-component labelling.
//!
//! * **Exact**: every distinct `f32` score is a threshold. Pixel AUROC equals scikit-learn's
//!   `roc_auc_score` (ties count as the trapezoid through the tied block; computed as an exact
//!   integer Mann–Whitney sum); AU-PRO follows MVTec AD's `compute_pro` + `trapezoid`
//!   (8-connected regions, FPR over all defect-free pixels, PRO = mean covered fraction over all
//!   regions, tied scores merged, curve from (0, 0) to (1, 1), linear interpolation at the
//!   integration limit, area divided by the limit).
//! * **Fast**: defect-free pixels are kept as 2-byte halves of order-preserving keys, bucketed by
//!   the other half while they stream in; `finish` summarises buckets in parallel (histogram or
//!   small sort) and makes one sweep from the highest score down that yields every metric.
//! * **Streaming**: an [`Accumulator`] takes one image at a time, accumulators from several
//!   threads [`merge`](Accumulator::merge), and [`finish`](Accumulator::finish) gives a
//!   serde-serialisable [`Metrics`]. Bad input is a [`MetricsError`] naming the image.
//!
//! ```
//! use ikd_metrics::{evaluate, MetricsConfig, Sample};
//!
//! // Two 4x4 images: a defect in the first, none in the second.
//! let mut scores = vec![0.1_f32; 16];
//! let mut mask = vec![0_u8; 16];
//! for i in [5, 6, 9, 10] {
//!     mask[i] = 1;
//!     scores[i] = 0.8;
//! }
//! scores[0] = 0.9; // one false alarm above every defect
//! let good: Vec<f32> = (0..16).map(|i| i as f32 / 100.0).collect();
//! let clean = vec![0_u8; 16];
//!
//! let samples = [Sample::new(&scores, &mask, 4, 4), Sample::new(&good, &clean, 4, 4)];
//! let m = evaluate(&samples, &MetricsConfig::default())?;
//! assert!((m.pixel_auroc.unwrap() - 27.0 / 28.0).abs() < 1e-12);
//! assert_eq!(m.image_auroc, Some(1.0));
//! assert_eq!(m.regions, 1);
//! println!("{}", serde_json::to_string_pretty(&m).unwrap());
//! # Ok::<(), ikd_metrics::MetricsError>(())
//! ```

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod accumulator;
mod config;
mod error;
mod image;
mod key;
mod label;
mod result;
mod roc;
mod sweep;

use rayon::prelude::*;

pub use accumulator::Accumulator;
pub use config::{CurveDetail, IkdProConfig, ImageScore, MetricsConfig};
pub use error::MetricsError;
pub use image::{image_average_precision, image_f1_max, ImageF1Max};
pub use label::{label_components, Components, Connectivity, MaskPixel};
pub use result::{AuPro, Curve, F1Max, IkdPro, Metrics};
pub use roc::{roc_curve, RocCurve};

/// One image, borrowed: its row-major anomaly map and its mask (`u8`, nonzero = defect, or
/// `bool`), both `width * height` long.
///
/// ```
/// use ikd_metrics::Sample;
///
/// let scores = vec![0.0_f32; 6];
/// let mask = vec![false; 6];
/// let s = Sample::new(&scores, &mask, 3, 2);
/// assert_eq!((s.width, s.height), (3, 2));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a, M = u8> {
    /// Anomaly scores, row-major; higher = more anomalous.
    pub scores: &'a [f32],
    /// Ground truth, row-major.
    pub mask: &'a [M],
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

impl<'a, M> Sample<'a, M> {
    /// Bundles one image's map and mask.
    ///
    /// ```
    /// let s = ikd_metrics::Sample::new(&[0.5], &[1_u8], 1, 1);
    /// assert_eq!(s.scores, &[0.5]);
    /// ```
    pub fn new(scores: &'a [f32], mask: &'a [M], width: usize, height: usize) -> Self {
        Sample { scores, mask, width, height }
    }
}

/// Computes the metrics selected in `config` over `samples`, using all of rayon's threads (one
/// accumulator per thread over a contiguous slice of images, merged in order).
///
/// ```
/// use ikd_metrics::{evaluate, MetricsConfig, Sample};
///
/// let (a, am) = ([0.7_f32, 0.2, 0.6, 0.1], [1_u8, 0, 1, 0]);
/// let (b, bm) = ([0.3_f32, 0.2, 0.1, 0.0], [0_u8; 4]);
/// let m = evaluate(&[Sample::new(&a, &am, 2, 2), Sample::new(&b, &bm, 2, 2)], &MetricsConfig::all())?;
/// assert_eq!(m.pixel_auroc, Some(1.0));
/// assert_eq!(m.average_precision, Some(1.0));
/// assert_eq!(m.f1_max.unwrap().threshold, 0.6);
/// # Ok::<(), ikd_metrics::MetricsError>(())
/// ```
///
/// # Errors
/// The first error (lowest image index) that [`Accumulator::update`] or
/// [`Accumulator::finish`] reports, or [`MetricsError::InvalidConfig`].
pub fn evaluate<M: MaskPixel>(
    samples: &[Sample<'_, M>],
    config: &MetricsConfig,
) -> Result<Metrics, MetricsError> {
    config.validate()?;
    let threads = rayon::current_num_threads().max(1);
    let per = samples.len().div_ceil(threads).max(1);
    let parts: Vec<Result<Accumulator, MetricsError>> = samples
        .par_chunks(per)
        .enumerate()
        .map(|(i, chunk)| {
            let mut acc = Accumulator::new(config.clone())?.with_first_index(i * per);
            for (j, s) in chunk.iter().enumerate() {
                acc.update(s.scores, s.mask, s.width, s.height)?;
                if j == 0 {
                    acc.reserve(chunk.len() - 1);
                }
            }
            Ok(acc)
        })
        .collect();
    let mut total = Accumulator::new(config.clone())?;
    for part in parts {
        total.merge(part?)?;
    }
    total.finish()
}

/// Pixel-level AUROC (exactly scikit-learn's `roc_auc_score` on all pixels).
///
/// ```
/// use ikd_metrics::{pixel_auroc, Sample};
/// let s = [0.9_f32, 0.5, 0.5, 0.1];
/// let m = [1_u8, 1, 0, 0];
/// assert_eq!(pixel_auroc(&[Sample::new(&s, &m, 4, 1)])?, 0.875);
/// # Ok::<(), ikd_metrics::MetricsError>(())
/// ```
///
/// # Errors
/// As [`evaluate`].
pub fn pixel_auroc<M: MaskPixel>(samples: &[Sample<'_, M>]) -> Result<f64, MetricsError> {
    let config = MetricsConfig { pixel_auroc: true, ..MetricsConfig::none() };
    Ok(evaluate(samples, &config)?.pixel_auroc.unwrap_or_default())
}

/// MVTec AD's AU-PRO up to FPR `limit` (normalised by the limit).
///
/// ```
/// use ikd_metrics::{au_pro, Sample};
/// let s = [0.9_f32, 0.5, 0.5, 0.1];
/// let m = [1_u8, 0, 1, 0];
/// // Regions: {0} fully found at FPR 0; {2} found at FPR 1/2 (tie with a defect-free pixel).
/// let a = au_pro(&[Sample::new(&s, &m, 4, 1)], 1.0)?;
/// assert!((a - 0.875).abs() < 1e-12);
/// # Ok::<(), ikd_metrics::MetricsError>(())
/// ```
///
/// # Errors
/// As [`evaluate`]; [`MetricsError::InvalidConfig`] if `limit` is not in `(0, 1]`.
pub fn au_pro<M: MaskPixel>(samples: &[Sample<'_, M>], limit: f64) -> Result<f64, MetricsError> {
    let config = MetricsConfig { au_pro_limits: vec![limit], ..MetricsConfig::none() };
    Ok(evaluate(samples, &config)?.au_pro.first().map_or(0.0, |a| a.value))
}

/// MVTec AD's PRO curve (every vertex, see [`CurveDetail::Full`]) and its AU-PRO up to `limit`.
///
/// ```
/// use ikd_metrics::{pro_curve, Sample};
/// let s = [0.9_f32, 0.5, 0.5, 0.1];
/// let m = [1_u8, 0, 1, 0];
/// let (curve, area) = pro_curve(&[Sample::new(&s, &m, 4, 1)], 1.0)?;
/// assert_eq!(curve.fpr, vec![0.0, 0.0, 0.5, 1.0, 1.0]);
/// assert_eq!(curve.pro, vec![0.0, 0.5, 1.0, 1.0, 1.0]);
/// assert!((area - 0.875).abs() < 1e-12);
/// # Ok::<(), ikd_metrics::MetricsError>(())
/// ```
///
/// # Errors
/// As [`au_pro`].
pub fn pro_curve<M: MaskPixel>(
    samples: &[Sample<'_, M>],
    limit: f64,
) -> Result<(Curve, f64), MetricsError> {
    let config = MetricsConfig {
        au_pro_limits: vec![limit],
        pro_curve: CurveDetail::Full,
        ..MetricsConfig::none()
    };
    let m = evaluate(samples, &config)?;
    Ok((m.pro_curve.unwrap_or_default(), m.au_pro.first().map_or(0.0, |a| a.value)))
}

/// Pixel-level average precision (scikit-learn's `average_precision_score`).
///
/// ```
/// use ikd_metrics::{average_precision, Sample};
/// let s = [0.9_f32, 0.8, 0.7, 0.1];
/// let m = [1_u8, 0, 1, 0];
/// // Recall 1/2 at precision 1, recall 1 at precision 2/3.
/// let ap = average_precision(&[Sample::new(&s, &m, 2, 2)])?;
/// assert!((ap - (0.5 + 0.5 * 2.0 / 3.0)).abs() < 1e-12);
/// # Ok::<(), ikd_metrics::MetricsError>(())
/// ```
///
/// # Errors
/// As [`evaluate`].
pub fn average_precision<M: MaskPixel>(samples: &[Sample<'_, M>]) -> Result<f64, MetricsError> {
    let config = MetricsConfig { average_precision: true, ..MetricsConfig::none() };
    Ok(evaluate(samples, &config)?.average_precision.unwrap_or_default())
}

/// The best pixel-level F1 and the threshold that reaches it.
///
/// ```
/// use ikd_metrics::{f1_max, Sample};
/// let s = [0.9_f32, 0.8, 0.7, 0.1];
/// let m = [1_u8, 0, 1, 0];
/// let best = f1_max(&[Sample::new(&s, &m, 4, 1)])?;
/// assert_eq!(best.threshold, 0.7);
/// assert!((best.f1 - 0.8).abs() < 1e-12);
/// # Ok::<(), ikd_metrics::MetricsError>(())
/// ```
///
/// # Errors
/// As [`evaluate`].
pub fn f1_max<M: MaskPixel>(samples: &[Sample<'_, M>]) -> Result<F1Max, MetricsError> {
    let config = MetricsConfig { f1_max: true, ..MetricsConfig::none() };
    evaluate(samples, &config)?.f1_max.ok_or(MetricsError::NoDefectPixel { images: samples.len() })
}

/// IKD's published PRO (see [`IkdPro`] for exactly what it computes).
///
/// ```
/// use ikd_metrics::{ikd_pro, IkdProConfig, Sample};
/// let s: Vec<f32> = (0..16).map(|i| i as f32).collect();
/// let mut m = vec![0_u8; 16];
/// m[15] = 1;
/// let p = ikd_pro(&[Sample::new(&s, &m, 4, 4)], IkdProConfig::default())?;
/// assert_eq!(p.thresholds.len(), 200);
/// assert!(p.value > 0.9 && p.value <= 1.0);
/// # Ok::<(), ikd_metrics::MetricsError>(())
/// ```
///
/// # Errors
/// As [`evaluate`], and [`MetricsError::IkdProUndefined`].
pub fn ikd_pro<M: MaskPixel>(
    samples: &[Sample<'_, M>],
    config: IkdProConfig,
) -> Result<IkdPro, MetricsError> {
    let config = MetricsConfig { ikd_pro: Some(config), ..MetricsConfig::none() };
    evaluate(samples, &config)?.ikd_pro.ok_or(MetricsError::NoImages)
}

/// Exact AUROC of per-image scores against per-image labels (`true` = defective), ties as the
/// trapezoid through the tied block (scikit-learn's `roc_auc_score`).
///
/// ```
/// use ikd_metrics::image_auroc;
/// assert_eq!(image_auroc(&[0.9, 0.4, 0.4, 0.1], &[true, true, false, false])?, 0.875);
/// # Ok::<(), ikd_metrics::MetricsError>(())
/// ```
///
/// # Errors
/// [`MetricsError::LengthMismatch`], [`MetricsError::NonFiniteImageScore`],
/// [`MetricsError::ImageAurocUndefined`].
pub fn image_auroc(scores: &[f64], defective: &[bool]) -> Result<f64, MetricsError> {
    image::check(scores, defective, "image scores and labels")?;
    let records: Vec<accumulator::ImageRecord> = scores
        .iter()
        .zip(defective)
        .map(|(&score, &defective)| accumulator::ImageRecord { score, defective })
        .collect();
    sweep::image_auroc_of(&records)
}
