//! Running a trained run on any images.

use std::path::{Path, PathBuf};

use crate::evaluate::{load_run, save_png, to_original_size};
use crate::train::files;
use crate::{viz, Error, Result, TestMetrics};

/// What `ikd predict` reports for one image.
///
/// ```
/// let p = ikd::Prediction { input: "a.png".into(), score: 2.0, anomalous: true, heatmap: "out/a_heatmap.png".into(), mask: "out/a_mask.png".into(), defect_fraction: 0.01 };
/// assert!(p.anomalous);
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prediction {
    /// The input image.
    pub input: PathBuf,
    /// The image score (the map's maximum).
    pub score: f64,
    /// Whether the score reaches the threshold.
    pub anomalous: bool,
    /// The heat map overlay written.
    pub heatmap: PathBuf,
    /// The binary mask written (255 where the map reaches the threshold).
    pub mask: PathBuf,
    /// Fraction of the image's pixels in the mask.
    pub defect_fraction: f64,
}

/// `summary.json` of `ikd predict`.
///
/// ```
/// let s = ikd::PredictSummary { run: "runs/x".into(), threshold: 1.0, images: vec![] };
/// assert!(s.images.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PredictSummary {
    /// The run used.
    pub run: PathBuf,
    /// The pixel threshold used.
    pub threshold: f64,
    /// One entry per input image, in input order.
    pub images: Vec<Prediction>,
}

/// Expands the inputs: files as given, folders to their PNG/JPEG files (sorted, not recursive).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// image::RgbImage::new(2, 2).save(dir.path().join("b.png")).unwrap();
/// image::RgbImage::new(2, 2).save(dir.path().join("a.jpg")).unwrap();
/// let files = ikd::expand_inputs(&[dir.path().to_path_buf()]).unwrap();
/// assert_eq!(files.len(), 2);
/// assert!(files[0].ends_with("a.jpg"));
/// ```
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .map_err(|e| Error::io(input, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && ikd_data::is_image_path(p))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(Error::bad_file(input, "holds no PNG or JPEG images".into()));
            }
            out.extend(found);
        } else if input.is_file() {
            out.push(input.clone());
        } else {
            return Err(Error::io(input, std::io::ErrorKind::NotFound.into()));
        }
    }
    Ok(out)
}

/// Runs a finished run on `inputs` (files or folders of PNG/JPEG of any size): for each image a
/// heat map overlay `<stem>_heatmap.png` and a binary mask `<stem>_mask.png` at the image's size,
/// and `summary.json` with every score, all in `out`. The threshold is `threshold` or, without
/// it, the F1-optimal one stored by `ikd test` in the run's `metrics.json`. The networks run on
/// the CPU kernels `kernels` allows.
///
/// ```no_run
/// let kernels = ikd::KernelPolicy::default();
/// let s = ikd::predict("runs/bottle".as_ref(), &["photos".into()], "out".as_ref(), None, None, kernels)?;
/// for p in &s.images { println!("{} {:.3} {}", p.input.display(), p.score, p.anomalous); }
/// # Ok::<(), ikd::Error>(())
/// ```
pub fn predict(
    run_dir: &Path,
    inputs: &[PathBuf],
    out: &Path,
    threshold: Option<f64>,
    device: Option<&str>,
    kernels: ikd_kernels::KernelPolicy,
) -> Result<PredictSummary> {
    let files_in = expand_inputs(inputs)?;
    let metrics_path = run_dir.join(files::METRICS);
    let stored: Option<TestMetrics> = match std::fs::read_to_string(&metrics_path) {
        Ok(text) => Some(
            serde_json::from_str(&text)
                .map_err(|e| Error::bad_file(&metrics_path, format!("unreadable metrics: {e}")))?,
        ),
        Err(_) => None,
    };
    let threshold = match (threshold, &stored) {
        (Some(t), _) => t,
        (None, Some(m)) => m.threshold,
        (None, None) => {
            return Err(Error::bad_file(
                &metrics_path,
                "missing: run `ikd test` first, or pass --threshold".into(),
            ))
        }
    };
    let (config, distiller, device) = load_run(run_dir, device, kernels)?;
    let transform = config.transform()?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let side = transform.image_size as usize;
    let mut images = Vec::with_capacity(files_in.len());
    let pb = ikd_io::progress::bar(files_in.len() as u64, "predict", true);
    for path in &files_in {
        let img = ikd_data::load_image(path)?;
        let x = transform.apply_image(&img, &device)?.unsqueeze(0)?;
        let m = distiller.anomaly_maps_resized(&x, side, side)?;
        let map = crate::maps::AnomalyMap {
            width: side as u32,
            height: side as u32,
            data: m.flatten_all()?.to_vec1::<f32>()?,
        };
        let full = to_original_size(&map, transform.load_size, img.width(), img.height(), &device)?;
        let rgb = ikd_data::to_rgb_pil(&img);
        let (lo, hi) = match &stored {
            Some(m) => (m.score_range.0 as f32, m.score_range.1 as f32),
            None => (full.data.iter().copied().fold(f32::INFINITY, f32::min), full.max()),
        };
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let heatmap = out.join(format!("{stem}_heatmap.png"));
        let mask_path = out.join(format!("{stem}_mask.png"));
        save_png(&heatmap, &viz::overlay(&rgb, &full.data, lo, hi, 0.5))?;
        let mask: Vec<u8> =
            full.data.iter().map(|&v| if v as f64 >= threshold { 255 } else { 0 }).collect();
        let fraction = mask.iter().filter(|&&v| v != 0).count() as f64 / mask.len().max(1) as f64;
        let gray = image::GrayImage::from_raw(full.width, full.height, mask)
            .ok_or_else(|| Error::Config("mask size".into()))?;
        save_png(&mask_path, &gray)?;
        let score = full.max() as f64;
        images.push(Prediction {
            input: path.clone(),
            score,
            anomalous: score >= threshold,
            heatmap,
            mask: mask_path,
            defect_fraction: fraction,
        });
        pb.inc(1);
    }
    pb.finish_and_clear();
    let summary = PredictSummary { run: run_dir.to_path_buf(), threshold, images };
    crate::fsutil::write_json(&out.join("summary.json"), &summary)?;
    Ok(summary)
}
