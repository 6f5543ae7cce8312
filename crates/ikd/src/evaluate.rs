//! Testing a trained run on its category's test images, and scoring maps made by any method.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ikd_data::{Category, Dataset, MaskCoverage, MaskPolicy, Order};
use ikd_metrics::{Accumulator, IkdProConfig, MetricsConfig};

use crate::maps::{write_tiff, AnomalyMap};
use crate::viz::save_png;
use crate::{viz, DefectMetrics, Error, ImageResult, Result, TestMetrics};

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
        roc_curve: Vec::new(),
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
    metrics.roc_curve = pixel_roc_curve(items)?;
    metrics.per_defect = per_defect
        .into_iter()
        .map(|(k, (n, a))| {
            let r = a.finish().map_err(metrics_err)?;
            Ok((k, DefectMetrics { images: n, pixel_auroc: r.pixel_auroc.unwrap_or(f64::NAN) }))
        })
        .collect::<Result<_>>()?;
    let f1 = m.f1_max.ok_or_else(|| Error::Internal("F1-max was not computed".into()))?;
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

/// The pixel ROC curve over the pixels the pixel metrics count (defect-free images, and
/// defective ones with a mask), thinned to the points where it moved by 1/1000 of an axis.
fn pixel_roc_curve(items: &[Scored]) -> Result<Vec<(f64, f64)>> {
    let (mut scores, mut positive) = (Vec::new(), Vec::new());
    for it in items {
        match (&it.mask, it.label) {
            (Some(m), _) => positive.extend(m.iter().map(|&v| v != 0)),
            (None, false) => positive.extend(std::iter::repeat_n(false, it.map.data.len())),
            (None, true) => continue,
        }
        scores.extend(it.map.data.iter().map(|&v| v as f64));
    }
    let curve = ikd_metrics::roc_curve(&scores, &positive)
        .map_err(|e| Error::metrics("the pixel ROC curve", e))?;
    Ok(thin(curve.points(), 1e-3))
}

/// The points of a monotone curve from which it moved by `step` along either axis, with its
/// first and last.
fn thin(points: impl Iterator<Item = (f64, f64)>, step: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    let mut last = None;
    for p in points {
        match out.last() {
            Some(&(x, y)) if (p.0 - x) < step && (p.1 - y) < step => last = Some(p),
            _ => {
                out.push(p);
                last = None;
            }
        }
    }
    out.extend(last);
    out
}

fn metrics_err(e: ikd_metrics::MetricsError) -> Error {
    Error::metrics("the test's metrics", e)
}

fn item_err(defect: &str, stem: &str, e: ikd_metrics::MetricsError) -> Error {
    Error::metrics(format!("test image {defect}/{stem}"), e)
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
    metrics.machine = Some(crate::MachineInfo::of(&opts.kernels));

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Two 64×64 maps, one defect-free, one with a mask over its higher scores (and noise).
    fn items() -> Vec<Scored> {
        let mut state = 7u64;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let side = 64;
        let good: Vec<f32> = (0..side * side).map(|_| next()).collect();
        let bad: Vec<f32> =
            (0..side * side).map(|i| next() + if i % 7 < 2 { 0.6 } else { 0.0 }).collect();
        let mask: Vec<u8> = (0..side * side).map(|i| u8::from(i % 7 < 2)).collect();
        let map = |data| AnomalyMap { width: side as u32, height: side as u32, data };
        vec![
            Scored {
                defect: "good".into(),
                stem: "0".into(),
                map: map(good),
                label: false,
                mask: None,
            },
            Scored {
                defect: "x".into(),
                stem: "1".into(),
                map: map(bad),
                label: true,
                mask: Some(mask),
            },
        ]
    }

    #[test]
    fn the_pixel_roc_curve_spans_the_pixel_auroc() {
        let m = score("c", &items(), true).unwrap();
        let c = &m.roc_curve;
        assert_eq!((c[0], c[c.len() - 1]), ((0.0, 0.0), (1.0, 1.0)));
        assert!(c.len() < 2100, "thinned: {} points", c.len());
        assert!(c.windows(2).all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1), "monotone");
        let area: f64 = c.windows(2).map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0).sum();
        assert!(
            (area - m.pixel_auroc).abs() < 1e-3,
            "area {area} vs pixel AUROC {}",
            m.pixel_auroc
        );
        assert!(m.pixel_auroc > 0.6 && m.pixel_auroc < 1.0, "{}", m.pixel_auroc);
        // without masks: no pixel curve, and none in metrics.json
        let m = score("c", &items(), false).unwrap();
        assert!(m.roc_curve.is_empty());
        assert!(!serde_json::to_string(&m).unwrap().contains("roc_curve"));
    }

    #[test]
    fn thinning_keeps_both_ends_and_every_move_of_a_step() {
        let pts = (0..=1000).map(|i| (i as f64 / 1000.0, (i as f64 / 1000.0).sqrt()));
        let t = thin(pts, 0.01);
        assert_eq!((t[0], t[t.len() - 1]), ((0.0, 0.0), (1.0, 1.0)));
        assert!(t.len() < 250, "{}", t.len());
        for w in t.windows(2).take(t.len() - 2) {
            assert!(w[1].0 - w[0].0 >= 0.01 - 1e-12 || w[1].1 - w[0].1 >= 0.01 - 1e-12, "{w:?}");
        }
    }
}
