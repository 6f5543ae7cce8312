//! Testing a trained run on its category's test images, and scoring maps made by any method.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use ikd_data::{Category, Dataset, MaskCoverage, MaskPolicy, Order};
use ikd_metrics::{Accumulator, IkdProConfig, MetricsConfig};

use crate::maps::{write_tiff, AnomalyMap};
use crate::{viz, Error, Result};

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
/// # let m: ikd::TestMetrics = unimplemented!();
/// println!("pixel AUROC {:.4}, AU-PRO {:.4}", m.pixel_auroc, m.au_pro);
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
    /// Where the maps were computed (`ikd test`; `None` for `ikd evaluate` and older runs).
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

/// One scored test image: defect type, stem, map, ground truth, and its mask (map-sized,
/// nonzero = defect) when it has one.
pub(crate) struct Scored {
    pub defect: String,
    pub stem: String,
    pub map: AnomalyMap,
    pub label: bool,
    pub mask: Option<Vec<u8>>,
}

/// Scores maps: image metrics from every image's label and map maximum; pixel metrics over the
/// defect-free images and the defective ones with a mask, when `pixel_level`.
fn score(category: &str, items: &[Scored], pixel_level: bool) -> Result<TestMetrics> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut image_results = Vec::with_capacity(items.len());
    for it in items {
        for &v in &it.map.data {
            lo = lo.min(v as f64);
            hi = hi.max(v as f64);
        }
        image_results.push(ImageResult {
            defect: it.defect.clone(),
            stem: it.stem.clone(),
            anomalous: it.label,
            score: it.map.max() as f64,
        });
    }
    let image_scores: Vec<f64> = image_results.iter().map(|r| r.score).collect();
    let image_labels: Vec<bool> = image_results.iter().map(|r| r.anomalous).collect();
    let image_best = ikd_metrics::image_f1_max(&image_scores, &image_labels).ok();
    let image_score_range = image_scores.iter().fold(None, |r: Option<(f64, f64)>, &s| {
        Some(r.map_or((s, s), |(lo, hi)| (lo.min(s), hi.max(s))))
    });
    let images_without_mask = items.iter().filter(|i| i.label && i.mask.is_none()).count();
    let mut metrics = TestMetrics {
        category: category.to_string(),
        pixel_auroc: f64::NAN,
        au_pro: f64::NAN,
        pro_ikd200: f64::NAN,
        image_auroc: ikd_metrics::image_auroc(&image_scores, &image_labels).unwrap_or(f64::NAN),
        pixel_ap: f64::NAN,
        f1_max: f64::NAN,
        threshold: f64::NAN,
        pixel_level,
        images_without_mask,
        per_defect: BTreeMap::new(),
        images: items.len(),
        score_range: (lo, hi),
        inference_seconds: 0.0,
        images_per_s: 0.0,
        image_results,
        pro_curve: Vec::new(),
        image_ap: ikd_metrics::image_average_precision(&image_scores, &image_labels).ok(),
        image_f1_max: image_best.map(|b| b.f1),
        image_threshold: image_best.map(|b| b.threshold),
        image_score_range,
        machine: None,
    };
    if !pixel_level {
        return Ok(metrics);
    }
    let config =
        MetricsConfig { ikd_pro: Some(IkdProConfig::default()), ..MetricsConfig::default() };
    let mut acc = Accumulator::new(config).map_err(metrics_err)?;
    let pixel_only = MetricsConfig { pixel_auroc: true, ..MetricsConfig::none() };
    let mut per_defect: BTreeMap<String, (usize, Accumulator)> = BTreeMap::new();
    for it in items.iter().filter(|i| i.label && i.mask.is_some()) {
        if !per_defect.contains_key(&it.defect) {
            per_defect.insert(
                it.defect.clone(),
                (0, Accumulator::new(pixel_only.clone()).map_err(metrics_err)?),
            );
        }
    }
    for it in items {
        let (w, h) = (it.map.width as usize, it.map.height as usize);
        let zeros;
        let mask: &[u8] = match (&it.mask, it.label) {
            (Some(m), _) => m,
            (None, false) => {
                zeros = vec![0; w * h];
                &zeros
            }
            (None, true) => continue, // a defective image without a mask: image metrics only
        };
        let (defect, stem) = (&it.defect, &it.stem);
        acc.update(&it.map.data, mask, w, h).map_err(|e| item_err(defect, stem, e))?;
        if !it.label {
            for (_, a) in per_defect.values_mut() {
                a.update(&it.map.data, mask, w, h).map_err(|e| item_err(defect, stem, e))?;
            }
        } else if let Some((n, a)) = per_defect.get_mut(defect) {
            *n += 1;
            a.update(&it.map.data, mask, w, h).map_err(|e| item_err(defect, stem, e))?;
        }
    }
    let m = acc.finish().map_err(metrics_err)?;
    metrics.per_defect = per_defect
        .into_iter()
        .map(|(k, (n, a))| {
            let r = a.finish().map_err(metrics_err)?;
            Ok((k, DefectMetrics { images: n, pixel_auroc: r.pixel_auroc.unwrap_or(f64::NAN) }))
        })
        .collect::<Result<_>>()?;
    let f1 = m.f1_max.ok_or_else(|| Error::Config("F1-max was not computed".into()))?;
    metrics.pro_curve = m
        .pro_curve
        .as_ref()
        .map(|c| c.fpr.iter().copied().zip(c.pro.iter().copied()).collect())
        .unwrap_or_default();
    metrics.pixel_auroc = m.pixel_auroc.unwrap_or(f64::NAN);
    metrics.au_pro = m.au_pro_at(0.3).unwrap_or(f64::NAN);
    metrics.pro_ikd200 = m.ikd_pro.as_ref().map_or(f64::NAN, |p| p.value);
    metrics.pixel_ap = m.average_precision.unwrap_or(f64::NAN);
    metrics.f1_max = f1.f1;
    metrics.threshold = f1.threshold as f64;
    Ok(metrics)
}

fn metrics_err(e: ikd_metrics::MetricsError) -> Error {
    Error::Config(format!("metrics: {e}"))
}

fn item_err(defect: &str, stem: &str, e: ikd_metrics::MetricsError) -> Error {
    Error::Config(format!("test image {defect}/{stem}: {e}"))
}

/// Options of [`test_run`].
///
/// ```
/// let o = ikd::TestOptions { save_maps: true, ..Default::default() };
/// assert!(o.heatmaps);
/// ```
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// Read the dataset here instead of the run's `data_root`.
    pub data_root: Option<PathBuf>,
    /// Run on this device instead of the run's.
    pub device: Option<String>,
    /// Write 32-bit float TIFF maps at the images' original size under
    /// `anomaly_maps/<category>/test/<defect>/<stem>.tiff` (MVTec AD's evaluation layout).
    pub save_maps: bool,
    /// Write `heatmaps/<defect>/<stem>.png` panels (image, heat map, ground-truth contour).
    pub heatmaps: bool,
    /// Images per inference batch.
    pub batch_size: usize,
    /// Show progress bars.
    pub progress: bool,
    /// The CPU kernels the networks run on (the binaries read it from the environment with
    /// `KernelPolicy::from_env`).
    pub kernels: ikd_kernels::KernelPolicy,
    /// Score a test set where only some defective images have a mask (pixel metrics over those
    /// that have one); without it such a test set is an error naming the images.
    pub allow_missing_masks: bool,
    /// Test on these plain folders instead of the run's data (folder mode: every image of
    /// `normal_test_dir`, or of `normal_dir`, as defect-free, `abnormal_dir` as defective).
    pub folder: Option<ikd_data::FolderSpec>,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            allow_missing_masks: false,
            folder: None,
            data_root: None,
            device: None,
            save_maps: false,
            heatmaps: true,
            batch_size: 8,
            progress: false,
            kernels: ikd_kernels::KernelPolicy::default(),
        }
    }
}

/// Tests a finished run: anomaly maps for every test image, `metrics.json`, heat maps, and
/// optionally TIFF maps in MVTec AD's evaluation layout.
///
/// ```no_run
/// let m = ikd::test_run("runs/bottle".as_ref(), &ikd::TestOptions::default())?;
/// println!("{:.4}", m.pixel_auroc);
/// # Ok::<(), ikd::Error>(())
/// ```
pub fn test_run(run_dir: &Path, opts: &TestOptions) -> Result<TestMetrics> {
    let run = crate::RunDir::new(run_dir);
    let predictor = crate::Predictor::open_named(run_dir, opts.device.as_deref(), false)?
        .with_kernel_policy(opts.kernels);
    tracing::info!("kernels: {}", opts.kernels.path());
    let (config, device) = (predictor.config().clone(), predictor.device().clone());
    let policy =
        if opts.allow_missing_masks { MaskPolicy::AllowMissing } else { MaskPolicy::AllOrNone };
    let category = match &opts.folder {
        Some(f) => {
            // every image of the normal folder is a test image here
            let normal_test = f.normal_test_dir.clone().unwrap_or_else(|| f.normal_dir.clone());
            let spec = ikd_data::FolderSpec { normal_test_dir: Some(normal_test), ..f.clone() };
            Category { name: config.category.clone(), ..spec.open(policy)? }
        }
        None => config.open_category(opts.data_root.as_deref(), policy)?,
    };
    let coverage = category.mask_coverage();
    if coverage == MaskCoverage::None && category.n_test_defect() > 0 {
        tracing::warn!(
            "{}: no defective test image has a mask: image-level metrics only",
            category.name
        );
    }
    let transform = config.transform()?;
    let data = Dataset::test(&category, &transform, opts.progress)?;
    let side = transform.image_size as usize;
    let start = Instant::now();
    let mut maps: Vec<AnomalyMap> = Vec::with_capacity(data.len());
    let pb = ikd_io::progress::bar(data.len() as u64, "test", opts.progress);
    for batch in data.batches(opts.batch_size.max(1), Order::Sequential, &device)? {
        let batch = batch?;
        maps.extend(predictor.crop_maps(&batch.images)?);
        pb.inc(batch.indices.len() as u64);
    }
    pb.finish_and_clear();
    let inference_seconds = start.elapsed().as_secs_f64();
    let items: Vec<Scored> = maps
        .into_iter()
        .enumerate()
        .map(|(i, map)| {
            let item = &category.test[i];
            let mask = match data.mask(i) {
                Some(m) => Some(m.as_raw().clone()),
                None if !item.label => Some(vec![0; side * side]),
                None => None,
            };
            Scored {
                defect: item.defect.clone(),
                stem: item.stem.clone(),
                map,
                label: item.label,
                mask,
            }
        })
        .collect();
    let mut metrics = score(&category.name, &items, coverage.pixel_level())?;
    metrics.inference_seconds = inference_seconds;
    metrics.images_per_s = items.len() as f64 / inference_seconds.max(1e-9);
    metrics.machine = Some(MachineInfo::of(&opts.kernels));

    if opts.heatmaps {
        let (lo, hi) = (metrics.score_range.0 as f32, metrics.score_range.1 as f32);
        let none = vec![0u8; side * side];
        for (i, it) in items.iter().enumerate() {
            let path = run.heatmap(&it.defect, &it.stem);
            let mask = it.mask.as_deref().unwrap_or(&none);
            let panel = viz::panel(data.image(i), &it.map.data, mask, lo, hi);
            save_png(&path, &panel)?;
        }
    }
    if opts.save_maps {
        for (i, it) in items.iter().enumerate() {
            let (w, h) = ikd_data::image_dimensions(&category.test[i].path)?;
            let full = predictor.original_size(&it.map, w, h)?;
            let path = run.anomaly_map(&category.name, &it.defect, &it.stem);
            write_tiff(&path, &full)?;
        }
    }
    run.save_metrics(&metrics)?;
    Ok(metrics)
}

/// A map of the centre crop, put back into the frame of the resized image (the border the crop cut
/// off gets the map's minimum) and resized bilinearly (half-pixel centres) to `w × h`.
pub(crate) fn to_original_size(
    map: &AnomalyMap,
    load_size: u32,
    w: u32,
    h: u32,
    device: &Device,
) -> Result<AnomalyMap> {
    let side = map.width as usize;
    let load = load_size as usize;
    let framed = if load == side {
        map.data.clone()
    } else {
        let min = map.data.iter().copied().fold(f32::INFINITY, f32::min);
        let off = (load - side) / 2;
        let mut out = vec![min; load * load];
        for y in 0..side {
            out[(y + off) * load + off..(y + off) * load + off + side]
                .copy_from_slice(&map.data[y * side..(y + 1) * side]);
        }
        out
    };
    let t = Tensor::from_vec(framed, (1, 1, load, load), device)?;
    let r = ikd_hrnet::resize_bilinear_half_pixel(&t, h as usize, w as usize)?;
    Ok(AnomalyMap { width: w, height: h, data: r.flatten_all()?.to_vec1::<f32>()? })
}

pub(crate) fn save_png<P>(path: &Path, img: &image::ImageBuffer<P, Vec<P::Subpixel>>) -> Result<()>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
{
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|e| Error::bad_file(path, e.to_string()))?;
    Ok(ikd_io::atomic_write(path, bytes.get_ref())?)
}

/// Scores anomaly maps made by any method, stored in MVTec AD's evaluation layout
/// (`<maps>/<category>/test/<defect>/<stem>.tiff` or `.png`), against the ground truth of the
/// dataset at `data_root`, at the images' original size. `categories` empty: every category that
/// has a folder in `maps`.
///
/// ```no_run
/// let results = ikd::evaluate_maps("anomaly_maps".as_ref(), "mvtec".as_ref(), &[])?;
/// for m in results { println!("{} {:.4}", m.category, m.au_pro); }
/// # Ok::<(), ikd::Error>(())
/// ```
pub fn evaluate_maps(
    maps_dir: &Path,
    data_root: &Path,
    categories: &[String],
) -> Result<Vec<TestMetrics>> {
    let categories: Vec<String> = if categories.is_empty() {
        let mut v: Vec<String> = std::fs::read_dir(maps_dir)
            .map_err(|e| Error::io(maps_dir, e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        if v.is_empty() {
            return Err(Error::bad_file(
                maps_dir,
                "holds no category folders of anomaly maps".into(),
            ));
        }
        v
    } else {
        categories.to_vec()
    };
    let mut out = Vec::new();
    for name in categories {
        let category = Category::open(data_root, &name)?;
        let pixel_level = category.mask_coverage().pixel_level();
        let mut items = Vec::with_capacity(category.test.len());
        for item in &category.test {
            let dir = maps_dir.join(&name).join("test").join(&item.defect);
            let path = ["tiff", "tif", "png"]
                .iter()
                .map(|ext| dir.join(format!("{}.{ext}", item.stem)))
                .find(|p| p.exists())
                .ok_or_else(|| {
                    Error::bad_file(
                        &dir.join(format!("{}.tiff", item.stem)),
                        "missing anomaly map".into(),
                    )
                })?;
            let map = crate::maps::read_map(&path)?;
            let (w, h) = ikd_data::image_dimensions(&item.path)?;
            if (map.width, map.height) != (w, h) {
                return Err(Error::bad_file(
                    &path,
                    format!(
                        "map is {}×{} but the image {} is {w}×{h}",
                        map.width,
                        map.height,
                        item.path.display()
                    ),
                ));
            }
            let mask = match &item.mask {
                Some(p) => Some(
                    ikd_data::load_mask(p)?
                        .into_raw()
                        .into_iter()
                        .map(|v| u8::from(v > 127))
                        .collect(),
                ),
                None if !item.label => Some(vec![0u8; (w * h) as usize]),
                None => None,
            };
            items.push(Scored {
                defect: item.defect.clone(),
                stem: item.stem.clone(),
                map,
                label: item.label,
                mask,
            });
        }
        out.push(score(&name, &items, pixel_level)?);
    }
    Ok(out)
}
