//! Which metrics to compute, and how.

use serde::{Deserialize, Serialize};

use crate::MetricsError;

/// How one image's anomaly map becomes its image-level score for image AUROC.
///
/// ```
/// use ikd_metrics::ImageScore;
///
/// assert_eq!(ImageScore::default(), ImageScore::Max);
/// assert_eq!(ImageScore::Mean.score(&[1.0, 2.0, 6.0]), 3.0);
/// assert_eq!(ImageScore::Max.score(&[1.0, 2.0, 6.0]), 6.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ImageScore {
    /// The map's maximum (MVTec AD's evaluation and IKD use it).
    #[default]
    Max,
    /// The map's mean.
    Mean,
}

impl ImageScore {
    /// The image score of a map of finite values (`-inf` for an empty map with [`Max`](Self::Max),
    /// NaN for an empty map with [`Mean`](Self::Mean)).
    ///
    /// ```
    /// use ikd_metrics::ImageScore;
    /// assert_eq!(ImageScore::Max.score(&[0.5, -1.0]), 0.5);
    /// ```
    pub fn score(self, scores: &[f32]) -> f64 {
        match self {
            ImageScore::Max => f64::from(scores.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v))),
            ImageScore::Mean => {
                scores.iter().map(|&v| f64::from(v)).sum::<f64>() / scores.len() as f64
            }
        }
    }
}

/// How much of the PRO curve [`Metrics::pro_curve`](crate::Metrics::pro_curve) returns.
///
/// ```
/// use ikd_metrics::CurveDetail;
/// assert_eq!(CurveDetail::default(), CurveDetail::Sampled(1000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CurveDetail {
    /// No curve.
    None,
    /// At most about `2n + 3` vertices of the exact curve: (0, 0), then a vertex whenever the FPR
    /// or the PRO has grown by at least `1/n` since the last one kept, the last vertex and (1, 1).
    /// Enough to plot; the areas are always computed on the exact curve.
    Sampled(usize),
    /// Every vertex of the exact curve except collinear ones on horizontal stretches: (0, 0), the
    /// corners at every threshold where a defect pixel changes the PRO, and (1, 1). Can be as long
    /// as twice the number of defect pixels.
    Full,
}

impl Default for CurveDetail {
    fn default() -> Self {
        CurveDetail::Sampled(1000)
    }
}

/// Settings of IKD's published PRO (see [`IkdPro`](crate::IkdPro)).
///
/// ```
/// use ikd_metrics::IkdProConfig;
///
/// let c = IkdProConfig::default();
/// assert_eq!((c.thresholds, c.max_fpr), (200, 0.3));
/// assert_eq!(IkdProConfig::published_code().thresholds, 2000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IkdProConfig {
    /// Number of equally spaced thresholds between the global minimum and maximum score.
    pub thresholds: usize,
    /// Points with an FPR above this are dropped before rescaling.
    pub max_fpr: f64,
}

impl Default for IkdProConfig {
    /// 200 thresholds, FPR ≤ 0.3 (the setting of the IKD paper's AU-PRO column).
    fn default() -> Self {
        IkdProConfig { thresholds: 200, max_fpr: 0.3 }
    }
}

impl IkdProConfig {
    /// The default of `cal_pro_metric` in the IKD repository's `train.py` (`max_steps=2000`).
    ///
    /// ```
    /// assert_eq!(ikd_metrics::IkdProConfig::published_code().max_fpr, 0.3);
    /// ```
    pub fn published_code() -> Self {
        IkdProConfig { thresholds: 2000, max_fpr: 0.3 }
    }
}

/// Which metrics an [`Accumulator`](crate::Accumulator) computes.
///
/// The default computes pixel AUROC, image AUROC (map maximum), AU-PRO up to FPR 0.3 with a
/// sampled curve, average precision and F1-max; IKD's PRO is opt-in (it also fills the holes of
/// every region).
///
/// ```
/// use ikd_metrics::{CurveDetail, IkdProConfig, MetricsConfig};
///
/// let config = MetricsConfig {
///     au_pro_limits: vec![0.05, 0.3, 1.0],
///     ikd_pro: Some(IkdProConfig::default()),
///     pro_curve: CurveDetail::None,
///     ..MetricsConfig::default()
/// };
/// assert!(config.validate().is_ok());
/// let only_auroc = MetricsConfig { pixel_auroc: true, ..MetricsConfig::none() };
/// assert!(only_auroc.au_pro_limits.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsConfig {
    /// Pixel-level AUROC.
    pub pixel_auroc: bool,
    /// Image-level AUROC, from per-image scores made this way; `None` skips it.
    pub image_auroc: Option<ImageScore>,
    /// AU-PRO integration limits (FPR), each in `(0, 1]`; empty skips AU-PRO.
    pub au_pro_limits: Vec<f64>,
    /// How much of the PRO curve to return (needs at least one AU-PRO limit).
    pub pro_curve: CurveDetail,
    /// Pixel-level average precision.
    pub average_precision: bool,
    /// Best pixel-level F1 and its threshold.
    pub f1_max: bool,
    /// IKD's published 200-threshold PRO; `None` skips it.
    pub ikd_pro: Option<IkdProConfig>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            pixel_auroc: true,
            image_auroc: Some(ImageScore::Max),
            au_pro_limits: vec![0.3],
            pro_curve: CurveDetail::default(),
            average_precision: true,
            f1_max: true,
            ikd_pro: None,
        }
    }
}

impl MetricsConfig {
    /// Nothing selected: a base to switch single metrics on.
    ///
    /// ```
    /// let c = ikd_metrics::MetricsConfig { average_precision: true, ..ikd_metrics::MetricsConfig::none() };
    /// assert!(!c.pixel_auroc && c.average_precision);
    /// ```
    pub fn none() -> Self {
        MetricsConfig {
            pixel_auroc: false,
            image_auroc: None,
            au_pro_limits: Vec::new(),
            pro_curve: CurveDetail::None,
            average_precision: false,
            f1_max: false,
            ikd_pro: None,
        }
    }

    /// Everything: the default plus IKD's PRO (200 thresholds) and AU-PRO at 0.05, 0.3 and 1.0.
    ///
    /// ```
    /// let c = ikd_metrics::MetricsConfig::all();
    /// assert!(c.ikd_pro.is_some() && c.au_pro_limits.len() == 3);
    /// ```
    pub fn all() -> Self {
        MetricsConfig {
            au_pro_limits: vec![0.05, 0.3, 1.0],
            ikd_pro: Some(IkdProConfig::default()),
            ..MetricsConfig::default()
        }
    }

    /// Whether any pixel-level metric is selected.
    ///
    /// ```
    /// let c = ikd_metrics::MetricsConfig { image_auroc: Some(Default::default()), ..ikd_metrics::MetricsConfig::none() };
    /// assert!(!c.needs_pixels());
    /// assert!(ikd_metrics::MetricsConfig::default().needs_pixels());
    /// ```
    pub fn needs_pixels(&self) -> bool {
        self.pixel_auroc
            || !self.au_pro_limits.is_empty()
            || self.average_precision
            || self.f1_max
            || self.ikd_pro.is_some()
    }

    /// Checks every setting's range.
    ///
    /// ```
    /// use ikd_metrics::MetricsConfig;
    /// let bad = MetricsConfig { au_pro_limits: vec![0.0], ..MetricsConfig::default() };
    /// assert!(bad.validate().is_err());
    /// ```
    ///
    /// # Errors
    /// [`MetricsError::InvalidConfig`] naming the setting: an AU-PRO limit outside `(0, 1]`, a
    /// sampled curve of 0 points, IKD PRO with 0 thresholds or an FPR limit outside `(0, 1]`.
    pub fn validate(&self) -> Result<(), MetricsError> {
        for &l in &self.au_pro_limits {
            if !(l > 0.0 && l <= 1.0) {
                return Err(MetricsError::InvalidConfig(format!(
                    "AU-PRO integration limit {l} is not in (0, 1]"
                )));
            }
        }
        if self.pro_curve == CurveDetail::Sampled(0) {
            return Err(MetricsError::InvalidConfig("a sampled PRO curve needs n > 0".into()));
        }
        if let Some(ikd) = self.ikd_pro {
            if ikd.thresholds == 0 {
                return Err(MetricsError::InvalidConfig(
                    "IKD PRO needs at least 1 threshold".into(),
                ));
            }
            if !(ikd.max_fpr > 0.0 && ikd.max_fpr <= 1.0) {
                return Err(MetricsError::InvalidConfig(format!(
                    "IKD PRO FPR limit {} is not in (0, 1]",
                    ikd.max_fpr
                )));
            }
        }
        Ok(())
    }
}
