//! What a test measured (`metrics.json`) and the OK/NG rule it gives a run.

use std::collections::BTreeMap;

/// Pixel AUROC of one defect type (its images and the defect-free ones).
///
/// ```
/// let d = ikd::DefectMetrics { images: 10, pixel_auroc: 0.97 };
/// assert!(d.pixel_auroc < 1.0);
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DefectMetrics {
    /// Test images of this defect type.
    pub images: usize,
    /// Pixel AUROC over these images and the defect-free test images (NaN, `null` in JSON,
    /// without masks).
    #[serde(with = "nan_as_null")]
    pub pixel_auroc: f64,
}

/// A metric that may be absent: NaN in Rust, `null` in JSON (read back as NaN).
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// One test image's score.
///
/// ```
/// let s = ikd::ImageResult { defect: "crack".into(), stem: "000".into(), anomalous: true, score: 3.5 };
/// assert!(s.anomalous);
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageResult {
    /// Defect type (`good` for defect-free images).
    pub defect: String,
    /// File stem.
    pub stem: String,
    /// Ground truth.
    pub anomalous: bool,
    /// The map's maximum.
    pub score: f64,
}

/// What `ikd test` and `ikd evaluate` measure: `metrics.json`.
///
/// ```no_run
/// let m = ikd::RunDir::new("runs/bottle").load_metrics()?.expect("a tested run");
/// println!("pixel AUROC {:.4}, AU-PRO {:.4}", m.pixel_auroc, m.au_pro);
/// # Ok::<(), ikd::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TestMetrics {
    /// The category.
    pub category: String,
    /// Pixel AUROC (exact, as scikit-learn). The pixel metrics are NaN (`null` in
    /// `metrics.json`) when the test set has no masks (`pixel_level` false).
    #[serde(with = "nan_as_null")]
    pub pixel_auroc: f64,
    /// AU-PRO up to FPR 0.3, MVTec AD's definition.
    #[serde(with = "nan_as_null")]
    pub au_pro: f64,
    /// PRO by IKD's published procedure (200 thresholds), for comparison with the paper.
    #[serde(with = "nan_as_null")]
    pub pro_ikd200: f64,
    /// Image AUROC from the maps' maxima.
    #[serde(with = "nan_as_null")]
    pub image_auroc: f64,
    /// Pixel average precision.
    #[serde(with = "nan_as_null")]
    pub pixel_ap: f64,
    /// Best pixel F1.
    #[serde(with = "nan_as_null")]
    pub f1_max: f64,
    /// The pixel threshold reaching `f1_max` (used by `ikd predict`).
    #[serde(with = "nan_as_null")]
    pub threshold: f64,
    /// Whether the pixel metrics were computed: `false` when no defective test image had a mask
    /// (image-level metrics only).
    #[serde(default = "yes")]
    pub pixel_level: bool,
    /// Defective test images without a mask (left out of the pixel metrics; with
    /// `--allow-missing-masks`, or all of them when `pixel_level` is false).
    #[serde(default)]
    pub images_without_mask: usize,
    /// Pixel AUROC per defect type.
    pub per_defect: BTreeMap<String, DefectMetrics>,
    /// Test images scored.
    pub images: usize,
    /// Lowest and highest score over all maps (the colour scale of the heat maps).
    pub score_range: (f64, f64),
    /// Seconds spent computing maps (0 for `evaluate`).
    pub inference_seconds: f64,
    /// Test images per second of inference (0 for `evaluate`).
    pub images_per_s: f64,
    /// Every image's score.
    pub image_results: Vec<ImageResult>,
    /// The PRO curve (FPR, PRO) from (0, 0) to (1, 1), sampled, for plots.
    pub pro_curve: Vec<(f64, f64)>,
    /// The pixel ROC curve (FPR, TPR) from (0, 0) to (1, 1), over the pixels the pixel AUROC
    /// counts, thinned for plots (a point where the curve has moved by 1/1000 of either axis);
    /// empty (and left out of `metrics.json`) without pixel metrics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roc_curve: Vec<(f64, f64)>,
    /// Image average precision (the images' scores against their labels); `None` without a
    /// defective test image.
    #[serde(default)]
    pub image_ap: Option<f64>,
    /// Best image F1.
    #[serde(default)]
    pub image_f1_max: Option<f64>,
    /// The image threshold reaching `image_f1_max`: the OK/NG rule ([`Decision`]).
    #[serde(default)]
    pub image_threshold: Option<f64>,
    /// Lowest and highest image score of the test set (the normalisation of [`Decision`]).
    #[serde(default)]
    pub image_score_range: Option<(f64, f64)>,
    /// Where the maps were computed (`ikd test`; `None` for `ikd evaluate`).
    #[serde(default)]
    pub machine: Option<MachineInfo>,
}

/// The machine section of `metrics.json`: which CPU and which code computed the maps, so that a
/// reported speed or result says what produced it.
///
/// ```
/// let m = ikd::MachineInfo::of(&ikd::KernelPolicy::candle());
/// assert_eq!(m.kernels, "candle");
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MachineInfo {
    /// The CPU model ([`ikd_kernels::cpu_model`]).
    pub cpu: String,
    /// The CPU kernels' path ([`ikd_kernels::KernelPolicy::path`]), e.g. `avx512 winograd-f4x4`.
    pub kernels: String,
}

impl MachineInfo {
    /// This machine, running `policy`.
    pub fn of(policy: &ikd_kernels::KernelPolicy) -> Self {
        Self { cpu: ikd_kernels::cpu_model(), kernels: policy.path() }
    }
}

fn yes() -> bool {
    true
}

impl TestMetrics {
    /// The pixel threshold for `ikd predict`'s masks, when the test had masks.
    ///
    /// ```
    /// # let mut m: ikd::TestMetrics = serde_json::from_str(r#"{"category":"c","pixel_auroc":null,
    /// #   "au_pro":null,"pro_ikd200":null,"image_auroc":1,"pixel_ap":null,"f1_max":null,"threshold":null,
    /// #   "per_defect":{},"images":0,"score_range":[0,1],"inference_seconds":0,
    /// #   "images_per_s":0,"image_results":[],"pro_curve":[],"pixel_level":false}"#).unwrap();
    /// assert!(m.pixel_auroc.is_nan());
    /// assert_eq!(m.pixel_threshold(), None);
    /// ```
    pub fn pixel_threshold(&self) -> Option<f64> {
        (self.pixel_level && self.threshold.is_finite()).then_some(self.threshold)
    }

    /// The run's OK/NG rule, from its test: `None` when the test set had no defective image.
    ///
    /// ```
    /// # let mut m: ikd::TestMetrics = serde_json::from_str(r#"{"category":"c","pixel_auroc":1,
    /// #   "au_pro":1,"pro_ikd200":1,"image_auroc":1,"pixel_ap":1,"f1_max":1,"threshold":0.5,
    /// #   "per_defect":{},"images":0,"score_range":[0,1],"inference_seconds":0,
    /// #   "images_per_s":0,"image_results":[],"pro_curve":[]}"#).unwrap();
    /// assert!(m.decision().is_none(), "a run tested before image thresholds");
    /// m.image_threshold = Some(2.0);
    /// m.image_score_range = Some((1.0, 5.0));
    /// let d = m.decision().unwrap();
    /// assert!(d.is_anomalous(2.0) && !d.is_anomalous(1.9));
    /// assert_eq!(d.normalized(2.0), 0.5);
    /// ```
    pub fn decision(&self) -> Option<Decision> {
        let (threshold, (min, max)) = (self.image_threshold?, self.image_score_range?);
        Some(Decision { threshold, min, max })
    }
}

/// The OK/NG rule of a tested run: an image is anomalous when its score reaches the image
/// threshold (the one of the best image F1 on the run's test set). Scores are normalised as
/// anomalib does: `clip((score − threshold) / (max − min) + 0.5, 0, 1)`, with `min` and `max`
/// the test set's image scores, so that the threshold maps to 0.5.
///
/// ```
/// let d = ikd::Decision { threshold: 3.0, min: 1.0, max: 5.0 };
/// assert_eq!((d.normalized(3.0), d.normalized(4.0), d.normalized(9.0)), (0.5, 0.75, 1.0));
/// assert!(d.is_anomalous(3.0) && !d.is_anomalous(2.5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    /// Image scores from this one up are anomalous.
    pub threshold: f64,
    /// The lowest image score of the test set.
    pub min: f64,
    /// The highest image score of the test set.
    pub max: f64,
}

impl Decision {
    /// Whether an image with this score is anomalous (NG).
    pub fn is_anomalous(&self, score: f64) -> bool {
        score >= self.threshold
    }

    /// The score in `[0, 1]`, the threshold at 0.5.
    pub fn normalized(&self, score: f64) -> f64 {
        let span = self.max - self.min;
        let v = if span > 0.0 {
            (score - self.threshold) / span + 0.5
        } else if self.is_anomalous(score) {
            1.0
        } else {
            0.0
        };
        v.clamp(0.0, 1.0)
    }
}
