//! Testing a trained run on its category's test images, and scoring maps made by any method.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use ikd_data::{Category, Dataset, Order};
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
    /// Pixel AUROC over these images and the defect-free test images.
    pub pixel_auroc: f64,
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
    /// Pixel AUROC (exact, as scikit-learn).
    pub pixel_auroc: f64,
    /// AU-PRO up to FPR 0.3, MVTec AD's definition.
    pub au_pro: f64,
    /// PRO by IKD's published procedure (200 thresholds), for comparison with the paper.
    pub pro_ikd200: f64,
    /// Image AUROC from the maps' maxima.
    pub image_auroc: f64,
    /// Pixel average precision.
    pub pixel_ap: f64,
    /// Best pixel F1.
    pub f1_max: f64,
    /// The pixel threshold reaching `f1_max` (used by `ikd predict`).
    pub threshold: f64,
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
}

impl TestMetrics {
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

/// Scores maps against masks: one entry per image, `(defect, stem, map, mask)` with maps and masks
/// of equal size (mask nonzero = defect).
fn score(category: &str, items: &[(String, String, AnomalyMap, Vec<u8>)]) -> Result<TestMetrics> {
    let config =
        MetricsConfig { ikd_pro: Some(IkdProConfig::default()), ..MetricsConfig::default() };
    let mut acc = Accumulator::new(config).map_err(metrics_err)?;
    let pixel_only = MetricsConfig { pixel_auroc: true, ..MetricsConfig::none() };
    let mut per_defect: BTreeMap<String, (usize, Accumulator)> = BTreeMap::new();
    for (defect, ..) in items {
        if defect != ikd_data::GOOD && !per_defect.contains_key(defect) {
            per_defect.insert(
                defect.clone(),
                (0, Accumulator::new(pixel_only.clone()).map_err(metrics_err)?),
            );
        }
    }
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut image_results = Vec::with_capacity(items.len());
    for (defect, stem, map, mask) in items {
        let (w, h) = (map.width as usize, map.height as usize);
        acc.update(&map.data, mask, w, h).map_err(|e| item_err(defect, stem, e))?;
        if defect == ikd_data::GOOD {
            for (_, a) in per_defect.values_mut() {
                a.update(&map.data, mask, w, h).map_err(|e| item_err(defect, stem, e))?;
            }
        } else if let Some((n, a)) = per_defect.get_mut(defect) {
            *n += 1;
            a.update(&map.data, mask, w, h).map_err(|e| item_err(defect, stem, e))?;
        }
        for &v in &map.data {
            lo = lo.min(v as f64);
            hi = hi.max(v as f64);
        }
        image_results.push(ImageResult {
            defect: defect.clone(),
            stem: stem.clone(),
            anomalous: mask.iter().any(|&m| m != 0),
            score: map.max() as f64,
        });
    }
    let m = acc.finish().map_err(metrics_err)?;
    let image_scores: Vec<f64> = image_results.iter().map(|r| r.score).collect();
    let image_labels: Vec<bool> = image_results.iter().map(|r| r.anomalous).collect();
    let image_best = ikd_metrics::image_f1_max(&image_scores, &image_labels).ok();
    let image_score_range = image_scores.iter().fold(None, |r: Option<(f64, f64)>, &s| {
        Some(r.map_or((s, s), |(lo, hi)| (lo.min(s), hi.max(s))))
    });
    let per_defect = per_defect
        .into_iter()
        .map(|(k, (n, a))| {
            let r = a.finish().map_err(metrics_err)?;
            Ok((k, DefectMetrics { images: n, pixel_auroc: r.pixel_auroc.unwrap_or(f64::NAN) }))
        })
        .collect::<Result<_>>()?;
    let f1 = m.f1_max.ok_or_else(|| Error::Config("F1-max was not computed".into()))?;
    let pro_curve = m
        .pro_curve
        .as_ref()
        .map(|c| c.fpr.iter().copied().zip(c.pro.iter().copied()).collect())
        .unwrap_or_default();
    Ok(TestMetrics {
        category: category.to_string(),
        pixel_auroc: m.pixel_auroc.unwrap_or(f64::NAN),
        au_pro: m.au_pro_at(0.3).unwrap_or(f64::NAN),
        pro_ikd200: m.ikd_pro.as_ref().map_or(f64::NAN, |p| p.value),
        image_auroc: m.image_auroc.unwrap_or(f64::NAN),
        pixel_ap: m.average_precision.unwrap_or(f64::NAN),
        f1_max: f1.f1,
        threshold: f1.threshold as f64,
        per_defect,
        images: items.len(),
        score_range: (lo, hi),
        inference_seconds: 0.0,
        images_per_s: 0.0,
        image_results,
        pro_curve,
        image_ap: ikd_metrics::image_average_precision(&image_scores, &image_labels).ok(),
        image_f1_max: image_best.map(|b| b.f1),
        image_threshold: image_best.map(|b| b.threshold),
        image_score_range,
    })
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
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
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
    let (config, device) = (predictor.config().clone(), predictor.device().clone());
    let root = opts.data_root.clone().unwrap_or_else(|| config.data_root.clone());
    let category = Category::open(&root, &config.category)?;
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
    let items: Vec<(String, String, AnomalyMap, Vec<u8>)> = maps
        .into_iter()
        .enumerate()
        .map(|(i, map)| {
            let item = &category.test[i];
            let mask =
                data.mask(i).map(|m| m.as_raw().clone()).unwrap_or_else(|| vec![0; side * side]);
            (item.defect.clone(), item.stem.clone(), map, mask)
        })
        .collect();
    let mut metrics = score(&category.name, &items)?;
    metrics.inference_seconds = inference_seconds;
    metrics.images_per_s = items.len() as f64 / inference_seconds.max(1e-9);

    if opts.heatmaps {
        let (lo, hi) = (metrics.score_range.0 as f32, metrics.score_range.1 as f32);
        for (i, (defect, stem, map, mask)) in items.iter().enumerate() {
            let path = run.heatmap(defect, stem);
            let panel = viz::panel(data.image(i), &map.data, mask, lo, hi);
            save_png(&path, &panel)?;
        }
    }
    if opts.save_maps {
        for (i, (defect, stem, map, _)) in items.iter().enumerate() {
            let (w, h) = ikd_data::image_dimensions(&category.test[i].path)?;
            let full = predictor.original_size(map, w, h)?;
            let path = run.anomaly_map(&category.name, defect, stem);
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
                Some(p) => ikd_data::load_mask(p)?
                    .into_raw()
                    .into_iter()
                    .map(|v| u8::from(v > 127))
                    .collect(),
                None => vec![0u8; (w * h) as usize],
            };
            items.push((item.defect.clone(), item.stem.clone(), map, mask));
        }
        out.push(score(&name, &items)?);
    }
    Ok(out)
}
