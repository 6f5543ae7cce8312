//! The result of [`Accumulator::finish`](crate::Accumulator::finish).

use serde::{Deserialize, Serialize};

/// The area under the PRO curve up to one FPR limit, divided by the limit (MVTec AD's AU-PRO).
///
/// ```
/// let a = ikd_metrics::AuPro { limit: 0.3, value: 0.9 };
/// assert_eq!(a.limit, 0.3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AuPro {
    /// The integration limit (FPR).
    pub limit: f64,
    /// Normalised area, in `[0, 1]`.
    pub value: f64,
}

/// A curve as two equally long lists, ordered by increasing `fpr`.
///
/// ```
/// let c = ikd_metrics::Curve { fpr: vec![0.0, 1.0], pro: vec![0.0, 1.0] };
/// assert_eq!(c.len(), 2);
/// assert!(!c.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Curve {
    /// False positive rates.
    pub fpr: Vec<f64>,
    /// PRO values.
    pub pro: Vec<f64>,
}

impl Curve {
    /// Number of points.
    ///
    /// ```
    /// assert_eq!(ikd_metrics::Curve::default().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.fpr.len()
    }

    /// Whether the curve has no point.
    ///
    /// ```
    /// assert!(ikd_metrics::Curve::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.fpr.is_empty()
    }
}

/// The best pixel-level F1 over all thresholds.
///
/// A pixel is predicted defective when its score is `>= threshold`. Among thresholds with the same
/// F1 the lowest is reported (as `thresholds[argmax(f1)]` over scikit-learn's
/// `precision_recall_curve` does).
///
/// ```
/// let f = ikd_metrics::F1Max { f1: 0.8, threshold: 0.5, precision: 0.8, recall: 0.8 };
/// assert!(f.f1 <= 1.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct F1Max {
    /// The F1 score.
    pub f1: f64,
    /// The score threshold (`score >= threshold` ⇒ defect).
    pub threshold: f32,
    /// Precision at the threshold.
    pub precision: f64,
    /// Recall at the threshold.
    pub recall: f64,
}

/// IKD's published PRO: the area under a 200-threshold PRO curve with the FPR axis (FPR ≤ 0.3)
/// min-max rescaled to `[0, 1]`.
///
/// It follows `cal_pro_metric` of the IKD repository's `train.py` (github.com/caoyunkang/IKD):
/// thresholds `max - k·(max - min)/n` for `k = 0..n` (computed in `f64`, compared in `f32`, as
/// NumPy 1.x did), a pixel is positive when its score is `> threshold`; regions are the
/// 8-connected components of each mask; a region's overlap is the positive pixels of the region
/// **with its holes filled** (`regionprops(...).filled_image`) divided by its pixel count; PRO is
/// the mean over all regions of all images; FPR is over all defect-free pixels; points with
/// FPR ≤ `max_fpr` are kept, their FPRs rescaled as `(x - min) / (max - min)` and integrated with
/// the trapezoid rule (`sklearn.metrics.auc`). The published code's default is 2000 thresholds
/// ([`IkdProConfig::published_code`](crate::IkdProConfig::published_code)); the paper's
/// comparisons use 200, the default here.
///
/// ```
/// let p = ikd_metrics::IkdPro { value: 0.9, thresholds: vec![1.0], fpr: vec![0.0], pro: vec![0.0] };
/// assert_eq!(p.thresholds.len(), p.fpr.len());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IkdPro {
    /// The normalised area.
    pub value: f64,
    /// Every threshold, decreasing.
    pub thresholds: Vec<f32>,
    /// FPR at each threshold (before the cut and rescaling).
    pub fpr: Vec<f64>,
    /// PRO at each threshold (can exceed 1 when filled holes are predicted defective, as in the
    /// published code).
    pub pro: Vec<f64>,
}

/// Everything an [`Accumulator`](crate::Accumulator) measured; metrics not selected in its
/// [`MetricsConfig`](crate::MetricsConfig) are `None` (or empty).
///
/// ```
/// use ikd_metrics::{evaluate, MetricsConfig, Sample};
///
/// let scores = [0.9_f32, 0.1, 0.4, 0.3];
/// let mask = [1_u8, 0, 0, 0];
/// let normal = [0.2_f32, 0.1, 0.0, 0.3];
/// let clean = [0_u8; 4];
/// let m = evaluate(
///     &[Sample::new(&scores, &mask, 2, 2), Sample::new(&normal, &clean, 2, 2)],
///     &MetricsConfig::default(),
/// )?;
/// assert_eq!(m.pixel_auroc, Some(1.0));
/// assert_eq!(m.au_pro_at(0.3), Some(1.0));
/// let json = serde_json::to_string(&m).unwrap();
/// assert!(json.contains("pixel_auroc"));
/// # Ok::<(), ikd_metrics::MetricsError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Number of images.
    pub images: usize,
    /// Number of images with at least one defect pixel.
    pub defective_images: usize,
    /// Number of pixels.
    pub pixels: u64,
    /// Number of defect pixels.
    pub defect_pixels: u64,
    /// Number of defect regions (8-connected) over all images.
    pub regions: u64,
    /// Pixel-level AUROC (exact, ties as in scikit-learn's `roc_auc_score`).
    pub pixel_auroc: Option<f64>,
    /// Image-level AUROC.
    pub image_auroc: Option<f64>,
    /// AU-PRO at each selected limit, in the order of the configuration.
    pub au_pro: Vec<AuPro>,
    /// The PRO curve, as selected by [`CurveDetail`](crate::CurveDetail).
    pub pro_curve: Option<Curve>,
    /// Pixel-level average precision (scikit-learn's `average_precision_score`).
    pub average_precision: Option<f64>,
    /// Best pixel-level F1 and its threshold.
    pub f1_max: Option<F1Max>,
    /// IKD's published PRO.
    pub ikd_pro: Option<IkdPro>,
}

impl Metrics {
    /// AU-PRO at `limit`, if it was computed.
    ///
    /// ```
    /// # use ikd_metrics::{AuPro, Metrics};
    /// # let m = Metrics { images: 0, defective_images: 0, pixels: 0, defect_pixels: 0, regions: 0,
    /// #   pixel_auroc: None, image_auroc: None, au_pro: vec![AuPro { limit: 0.3, value: 0.75 }],
    /// #   pro_curve: None, average_precision: None, f1_max: None, ikd_pro: None };
    /// assert_eq!(m.au_pro_at(0.3), Some(0.75));
    /// assert_eq!(m.au_pro_at(0.05), None);
    /// ```
    pub fn au_pro_at(&self, limit: f64) -> Option<f64> {
        self.au_pro.iter().find(|a| a.limit == limit).map(|a| a.value)
    }
}
