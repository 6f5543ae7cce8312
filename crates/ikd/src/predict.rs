//! `ikd predict`: a finished run on any folders of images, through [`Predictor`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::viz::save_png;
use crate::{Decision, Error, Predictor, Result};

/// What `ikd predict` wrote for one image.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PredictedFile {
    /// The input image.
    pub input: PathBuf,
    /// The image score (the map's maximum).
    pub score: f64,
    /// The score in `[0, 1]`, the run's threshold at 0.5; `None` for a run without a test.
    pub normalized: Option<f64>,
    /// The OK/NG decision; `None` for a run without a test.
    pub anomalous: Option<bool>,
    /// The heat map overlay written.
    pub heatmap: PathBuf,
    /// The binary mask written (255 where the map reaches the pixel threshold), if there is a
    /// pixel threshold.
    pub mask: Option<PathBuf>,
    /// The share of the image's pixels in the mask.
    pub defect_fraction: Option<f64>,
}

/// `summary.json` of `ikd predict`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PredictSummary {
    /// The run used.
    pub run: PathBuf,
    /// The OK/NG rule used (`None`: the run was never tested, raw scores only).
    pub decision: Option<Decision>,
    /// The pixel threshold of the masks.
    pub pixel_threshold: Option<f64>,
    /// One entry per scored image, in input order.
    pub images: Vec<PredictedFile>,
    /// Files in the input folders that are not images (by their extension), left out.
    pub skipped: Vec<PathBuf>,
    /// Images that could not be read or scored, with the reason; the others were scored.
    pub failed: Vec<(PathBuf, String)>,
}

/// Options of [`predict`].
#[derive(Debug, Clone, Default)]
pub struct PredictOptions {
    /// Walk the input folders' subfolders too.
    pub recursive: bool,
    /// Replace outputs that exist (otherwise an existing output is an error, before anything
    /// is written).
    pub overwrite: bool,
    /// Masks from this pixel threshold instead of the run's F1-optimal one.
    pub pixel_threshold: Option<f64>,
    /// `cpu` or `cuda:N` (default: the run's).
    pub device: Option<String>,
    /// The CPU kernels the networks run on.
    pub kernels: ikd_kernels::KernelPolicy,
    /// Show a progress bar.
    pub progress: bool,
}

/// What [`expand_inputs`] found: each image with the path its outputs take below the output
/// folder, and the files in the input folders that are not images.
pub type Inputs = (Vec<(PathBuf, PathBuf)>, Vec<PathBuf>);

/// The inputs of `ikd predict`: image files as given, folders to the image files they hold
/// (sorted; subfolders too when `recursive`). Returns the images, each with the path its
/// outputs take below the output folder (its path relative to the inputs' common folder, so
/// that two `000.png` in two folders never collide), and the non-image files found in folders.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// for f in ["a/good/000.png", "b/good/000.png", "b/notes.txt"] {
///     let p = dir.path().join(f);
///     std::fs::create_dir_all(p.parent().unwrap())?;
///     image::RgbImage::new(2, 2).save(&p).or_else(|_| std::fs::write(&p, "x"))?;
/// }
/// let (images, skipped) = ikd::expand_inputs(&[dir.path().join("a"), dir.path().join("b")], true)?;
/// let rel: Vec<_> = images.iter().map(|(_, r)| r.to_str().unwrap()).collect();
/// assert_eq!(rel, ["a/good/000.png", "b/good/000.png"]);
/// assert!(skipped[0].ends_with("notes.txt"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn expand_inputs(inputs: &[PathBuf], recursive: bool) -> Result<Inputs> {
    let mut images = Vec::new();
    let mut skipped = Vec::new();
    for input in inputs {
        let abs = std::path::absolute(input).map_err(|e| Error::io(input, e))?;
        if input.is_dir() {
            let before = images.len();
            walk(&abs, recursive, &mut images, &mut skipped)?;
            if images.len() == before {
                return Err(Error::bad_file(input, "holds no images".into()));
            }
        } else if input.is_file() {
            images.push(abs);
        } else {
            return Err(Error::io(input, std::io::ErrorKind::NotFound.into()));
        }
    }
    let mut seen = BTreeSet::new();
    images.retain(|p| seen.insert(p.clone()));
    let base = common_folder(&images);
    let out = images
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&base).map(Path::to_path_buf).unwrap_or_else(|_| p.clone());
            (p, rel)
        })
        .collect();
    Ok((out, skipped))
}

fn walk(
    dir: &Path,
    recursive: bool,
    images: &mut Vec<PathBuf>,
    skipped: &mut Vec<PathBuf>,
) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| Error::io(dir, e)))
        .collect::<Result<_>>()?;
    entries.sort();
    for p in entries {
        let hidden = p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            if recursive {
                walk(&p, recursive, images, skipped)?;
            }
        } else if ikd_data::is_image_path(&p) {
            images.push(p);
        } else {
            skipped.push(p);
        }
    }
    Ok(())
}

/// The deepest folder holding every path.
fn common_folder(paths: &[PathBuf]) -> PathBuf {
    let mut base = match paths.first().and_then(|p| p.parent()) {
        Some(p) => p.to_path_buf(),
        None => return PathBuf::new(),
    };
    for p in &paths[1..] {
        while !p.starts_with(&base) {
            if !base.pop() {
                return PathBuf::new();
            }
        }
    }
    base
}

/// `dir/rel` with `suffix` in place of the extension: `out/a/000_heatmap.png`.
fn output(dir: &Path, rel: &Path, suffix: &str) -> PathBuf {
    let stem = rel.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    dir.join(rel).with_file_name(format!("{stem}{suffix}"))
}

/// Runs a finished run on `inputs` (image files or folders, images of any size): for each image
/// a heat map overlay `<stem>_heatmap.png` and, with a pixel threshold, a mask `<stem>_mask.png`
/// at the image's size, placed as the input is below the inputs' common folder; `summary.json`
/// and `predictions.csv` (path, score, normalised, anomalous, defect fraction) list them all.
/// Existing outputs are an error unless `opts.overwrite`. An image that cannot be read is
/// recorded in [`PredictSummary::failed`] and the others are still scored.
///
/// ```no_run
/// let opts = ikd::PredictOptions { recursive: true, ..Default::default() };
/// let s = ikd::predict("runs/bottle".as_ref(), &["photos".into()], "out".as_ref(), &opts)?;
/// for p in &s.images {
///     println!("{} {:.3} {:?}", p.input.display(), p.score, p.anomalous);
/// }
/// # Ok::<(), ikd::Error>(())
/// ```
pub fn predict(
    run_dir: &Path,
    inputs: &[PathBuf],
    out: &Path,
    opts: &PredictOptions,
) -> Result<PredictSummary> {
    let (files_in, skipped) = expand_inputs(inputs, opts.recursive)?;
    let mut predictor = Predictor::open_named(run_dir, opts.device.as_deref(), true)?
        .with_kernel_policy(opts.kernels);
    if let Some(t) = opts.pixel_threshold {
        predictor = predictor.with_pixel_threshold(t);
    }
    let with_mask = predictor.pixel_threshold().is_some();
    if !opts.overwrite {
        let summary = [out.join("summary.json"), out.join("predictions.csv")];
        let planned = files_in.iter().flat_map(|(_, rel)| {
            let mut v = vec![output(out, rel, "_heatmap.png")];
            if with_mask {
                v.push(output(out, rel, "_mask.png"));
            }
            v
        });
        if let Some(p) = summary.into_iter().chain(planned).find(|p| p.exists()) {
            return Err(Error::bad_file(
                &p,
                "exists: replace the outputs (`PredictOptions::overwrite`), or choose another output folder"
                    .into(),
            ));
        }
    }
    let pb = ikd_io::progress::bar(files_in.len() as u64, "predict", opts.progress);
    let mut images = Vec::with_capacity(files_in.len());
    let mut failed = Vec::new();
    for (path, rel) in &files_in {
        pb.inc(1);
        let img = match ikd_data::load_image(path) {
            Ok(img) => img,
            Err(e) => {
                tracing::warn!("{e}");
                failed.push((path.clone(), e.to_string()));
                continue;
            }
        };
        let p = predictor.score(&img)?;
        let heatmap = output(out, rel, "_heatmap.png");
        save_png(&heatmap, &predictor.heatmap(&img, &p))?;
        let mask = match &p.mask {
            Some(m) => {
                let path = output(out, rel, "_mask.png");
                save_png(&path, m)?;
                Some(path)
            }
            None => None,
        };
        images.push(PredictedFile {
            input: path.clone(),
            score: p.score,
            normalized: p.normalized,
            anomalous: p.anomalous,
            heatmap,
            mask,
            defect_fraction: p.defect_fraction,
        });
    }
    pb.finish_and_clear();
    let summary = PredictSummary {
        run: run_dir.to_path_buf(),
        decision: predictor.decision(),
        pixel_threshold: predictor.pixel_threshold(),
        images,
        skipped,
        failed,
    };
    crate::fsutil::write_json(&out.join("summary.json"), &summary)?;
    ikd_io::atomic_write(&out.join("predictions.csv"), predictions_csv(&summary).as_bytes())?;
    Ok(summary)
}

/// `predictions.csv`: one line per scored image.
fn predictions_csv(s: &PredictSummary) -> String {
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    let mut csv = String::from("path,score,normalized,anomalous,defect_fraction\n");
    for p in &s.images {
        csv.push_str(&format!(
            "{},{},{},{},{}\n",
            ikd_io::csv_field(&p.input.display().to_string()),
            p.score,
            opt(p.normalized),
            p.anomalous.map_or(String::new(), |a| a.to_string()),
            opt(p.defect_fraction),
        ));
    }
    csv
}
