//! What a report measures ([`Results`]): one [`Row`] per run, the [`Mean`]s over textures,
//! objects and all, the runs' settings and teachers.

use std::collections::BTreeMap;

use ikd::{files, TeacherIdentity};

use crate::run::Run;
use crate::{Machine, PaperTable, Result};

/// One run's line of the report (percentages for the metrics).
///
/// ```
/// # fn show(r: &ikd_report::Results) {
/// for row in &r.categories {
///     println!("{}: pixel AUROC {:.2} %", row.name, row.pixel_auroc);
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Row {
    /// The run's name in the report: its category, or `category (parent folder)` when several
    /// runs have the category.
    pub name: String,
    /// Category name.
    pub category: String,
    /// The run folder.
    pub run: String,
    /// `texture` or `object` (MVTec AD, from the paper's table), `synthetic`, or `other`.
    pub kind: String,
    /// Pixel AUROC (%).
    pub pixel_auroc: f64,
    /// AU-PRO up to FPR 0.3 (%).
    pub au_pro: f64,
    /// The paper's pixel AUROC (%), for MVTec AD categories.
    pub paper_pixel_auroc: Option<f64>,
    /// The paper's AU-PRO (%).
    pub paper_au_pro: Option<f64>,
    /// Ours minus the paper's (percentage points).
    pub diff_pixel_auroc: Option<f64>,
    /// Ours minus the paper's (percentage points).
    pub diff_au_pro: Option<f64>,
    /// PRO by IKD's published 200-threshold procedure (%).
    pub pro_ikd200: f64,
    /// Image AUROC (%).
    pub image_auroc: f64,
    /// Pixel average precision (%).
    pub pixel_ap: f64,
    /// Best pixel F1 (%).
    pub f1_max: f64,
    /// Image average precision (%), when the test set had a defective image.
    pub image_ap: Option<f64>,
    /// Best image F1 (%).
    pub image_f1_max: Option<f64>,
    /// The image score from which a test image is called anomalous (the best image F1's
    /// threshold; raw score, not %).
    pub image_threshold: Option<f64>,
    /// Optimiser steps (from the training log).
    pub train_steps: u64,
    /// Training seconds (from the training log).
    pub train_seconds: f64,
    /// Training images per second.
    pub train_images_per_s: f64,
    /// The last step's loss.
    pub final_loss: Option<f64>,
    /// The AHSM margins after the last step, one per feature level.
    pub final_margins: Vec<f64>,
    /// Test images.
    pub test_images: usize,
    /// Test images per second (inference).
    pub test_images_per_s: f64,
    /// `pixel` when the ROC curve is the pixel-level one from `metrics.json`, `image` when it is
    /// the image-level curve of the images' scores.
    pub roc_level: String,
}

/// A mean over a group of runs.
///
/// ```
/// # fn show(r: &ikd_report::Results) {
/// if let Some(all) = r.means.iter().find(|m| m.group == "all") {
///     println!("mean pixel AUROC over {} runs: {:.2} %", all.categories, all.pixel_auroc);
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Mean {
    /// `textures`, `objects` or `all`.
    pub group: String,
    /// Runs averaged.
    pub categories: usize,
    /// Mean pixel AUROC (%).
    pub pixel_auroc: f64,
    /// Mean AU-PRO (%).
    pub au_pro: f64,
    /// The paper's mean over the same categories, when it has them all.
    pub paper_pixel_auroc: Option<f64>,
    /// The paper's mean AU-PRO over the same categories.
    pub paper_au_pro: Option<f64>,
}

/// Everything in `results.json`.
///
/// ```no_run
/// let runs = ikd_report::find_runs(&["runs/demo"])?;
/// let r = ikd_report::write_report(&runs, "reports/demo".as_ref(), &Default::default())?;
/// println!("{}", serde_json::to_string_pretty(&r).unwrap());
/// # Ok::<(), ikd_report::ReportError>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Results {
    /// When the report was written.
    pub generated: String,
    /// The run folders.
    pub runs: Vec<String>,
    /// Per run.
    pub categories: Vec<Row>,
    /// Means over textures, objects and all.
    pub means: Vec<Mean>,
    /// Training settings: each setting with its value(s) and the runs that used them.
    pub settings: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// The teachers (source and SHA-256 of their weights, from each run's `teacher.json`) and
    /// the runs trained with each.
    pub teachers: BTreeMap<String, Vec<String>>,
    /// Whether some run was trained with a random teacher (its scores show the pipeline, not the
    /// method).
    pub random_teacher: bool,
    /// The machine that wrote the report.
    pub machine: Machine,
}

/// What the scores of a run with a random teacher mean, and how to get the real one.
pub const RANDOM_TEACHER_NOTE: &str = "A random teacher is not the paper's ImageNet-pretrained \
    HRNet: these scores show that the pipeline runs end to end, not what the method achieves. \
    With network access once, `cargo xtask weights --backbone hrnet_w18_small` (or \
    `cargo xtask demo --teacher hub`) fetches timm's ImageNet weights into the Hugging Face cache.";

/// What the runs measured, beside the paper's values in `paper`.
pub(crate) fn measure(runs: &[Run], paper: &PaperTable) -> Result<Results> {
    let rows: Vec<Row> = runs.iter().map(|r| make_row(r, paper)).collect();
    Ok(Results {
        generated: crate::machine::utc_now(),
        runs: runs.iter().map(|r| r.dir.display().to_string()).collect(),
        means: means(&rows),
        categories: rows,
        settings: settings(runs)?,
        teachers: teachers(runs),
        random_teacher: runs.iter().any(|r| r.teacher.as_ref().is_some_and(|t| t.is_random())),
        machine: Machine::detect(),
    })
}

fn is_synthetic(run: &Run) -> bool {
    let c = &run.config;
    c.data_root.join(&c.category).join(ikd_data::synthetic::MARKER).is_file()
}

fn make_row(run: &Run, paper: &PaperTable) -> Row {
    let m = &run.metrics;
    let c = &run.config;
    let synthetic = is_synthetic(run);
    let published = if synthetic { None } else { paper.rows.get(&c.category) };
    let kind = match (synthetic, published) {
        (true, _) => "synthetic",
        (false, Some(p)) if p.texture => "texture",
        (false, Some(_)) => "object",
        (false, None) => "other",
    };
    let pct = |x: f64| x * 100.0;
    let (steps, seconds) = (run.log.steps.len() as u64, run.log.seconds);
    Row {
        name: run.name.clone(),
        category: c.category.clone(),
        run: run.dir.display().to_string(),
        kind: kind.into(),
        pixel_auroc: pct(m.pixel_auroc),
        au_pro: pct(m.au_pro),
        paper_pixel_auroc: published.map(|p| p.pixel_auroc),
        paper_au_pro: published.map(|p| p.au_pro),
        diff_pixel_auroc: published.map(|p| pct(m.pixel_auroc) - p.pixel_auroc),
        diff_au_pro: published.map(|p| pct(m.au_pro) - p.au_pro),
        pro_ikd200: pct(m.pro_ikd200),
        image_auroc: pct(m.image_auroc),
        pixel_ap: pct(m.pixel_ap),
        f1_max: pct(m.f1_max),
        image_ap: m.image_ap.map(pct),
        image_f1_max: m.image_f1_max.map(pct),
        image_threshold: m.image_threshold,
        train_steps: steps,
        train_seconds: seconds,
        train_images_per_s: if seconds > 0.0 {
            steps as f64 * c.batch_size as f64 / seconds
        } else {
            0.0
        },
        final_loss: run.log.loss.last().copied(),
        final_margins: run.log.margins.last().cloned().unwrap_or_default(),
        test_images: m.images,
        test_images_per_s: m.images_per_s,
        roc_level: if run.pixel_roc.is_some() { "pixel" } else { "image" }.into(),
    }
}

fn means(rows: &[Row]) -> Vec<Mean> {
    let mut out = Vec::new();
    for group in ["textures", "objects", "all"] {
        let sel: Vec<&Row> = rows
            .iter()
            .filter(|r| match group {
                "textures" => r.kind == "texture",
                "objects" => r.kind == "object",
                _ => true,
            })
            .collect();
        if sel.is_empty() {
            continue;
        }
        let n = sel.len() as f64;
        let mean = |f: &dyn Fn(&Row) -> f64| sel.iter().map(|r| f(r)).sum::<f64>() / n;
        let paper_mean = |f: &dyn Fn(&Row) -> Option<f64>| -> Option<f64> {
            let v: Option<Vec<f64>> = sel.iter().map(|r| f(r)).collect();
            v.map(|v| v.iter().sum::<f64>() / n)
        };
        out.push(Mean {
            group: group.into(),
            categories: sel.len(),
            pixel_auroc: mean(&|r| r.pixel_auroc),
            au_pro: mean(&|r| r.au_pro),
            paper_pixel_auroc: paper_mean(&|r| r.paper_pixel_auroc),
            paper_au_pro: paper_mean(&|r| r.paper_au_pro),
        });
    }
    out
}

fn settings(runs: &[Run]) -> Result<BTreeMap<String, BTreeMap<String, Vec<String>>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for r in runs {
        let v = serde_json::to_value(&r.config).map_err(|e| {
            ikd::Error::bad_file(
                &ikd::RunDir::new(&r.dir).config(),
                format!("cannot serialise: {e}"),
            )
        })?;
        let Some(obj) = v.as_object() else {
            return Err(ikd::Error::bad_file(
                &ikd::RunDir::new(&r.dir).config(),
                "not a JSON object".into(),
            )
            .into());
        };
        for (k, val) in obj {
            if k == "category" || k == "data_root" {
                continue;
            }
            let text = match val {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.entry(k.clone()).or_default().entry(text).or_default().push(r.name.clone());
        }
    }
    Ok(out)
}

/// Each teacher's description with the runs trained with it.
fn teachers(runs: &[Run]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in runs {
        let name = r.teacher.as_ref().map_or_else(
            || {
                format!(
                    "{} (not recorded by this run: {} missing)",
                    r.config.teacher_weights,
                    files::TEACHER
                )
            },
            TeacherIdentity::describe,
        );
        out.entry(name).or_default().push(r.name.clone());
    }
    out
}

/// Rows and results made up for the unit tests (of the tables too).
#[cfg(test)]
pub(crate) mod samples {
    use super::*;

    pub(crate) fn row(name: &str, kind: &str, auroc: f64, paper: Option<f64>) -> Row {
        Row {
            name: name.into(),
            category: name.into(),
            run: format!("runs/{name}"),
            kind: kind.into(),
            pixel_auroc: auroc,
            au_pro: auroc - 5.0,
            paper_pixel_auroc: paper,
            paper_au_pro: paper.map(|p| p - 5.0),
            diff_pixel_auroc: paper.map(|p| auroc - p),
            diff_au_pro: paper.map(|p| auroc - p),
            pro_ikd200: 0.0,
            image_auroc: 0.0,
            pixel_ap: 0.0,
            f1_max: 0.0,
            image_ap: None,
            image_f1_max: None,
            image_threshold: None,
            train_steps: 1,
            train_seconds: 1.0,
            train_images_per_s: 2.0,
            final_loss: Some(0.5),
            final_margins: vec![0.1, 0.2],
            test_images: 4,
            test_images_per_s: 1.0,
            roc_level: "image".into(),
        }
    }

    pub(crate) fn results(rows: Vec<Row>) -> Results {
        Results {
            generated: "2026-01-01 00:00 UTC".into(),
            runs: rows.iter().map(|r| r.run.clone()).collect(),
            means: means(&rows),
            categories: rows,
            settings: BTreeMap::new(),
            teachers: BTreeMap::new(),
            random_teacher: false,
            machine: Machine::detect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::samples::row;
    use super::*;

    #[test]
    fn means_cover_textures_objects_and_all() {
        let rows =
            [row("carpet", "texture", 90.0, Some(98.0)), row("bottle", "object", 80.0, Some(99.0))];
        let m = means(&rows);
        assert_eq!(
            m.iter().map(|m| m.group.as_str()).collect::<Vec<_>>(),
            ["textures", "objects", "all"]
        );
        assert_eq!(m[2].pixel_auroc, 85.0);
        assert_eq!(m[2].paper_pixel_auroc, Some(98.5));
        let synthetic =
            [row("carpet", "synthetic", 70.0, None), row("wood", "synthetic", 60.0, None)];
        let m = means(&synthetic);
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].pixel_auroc, m[0].paper_pixel_auroc), (65.0, None));
    }
}
