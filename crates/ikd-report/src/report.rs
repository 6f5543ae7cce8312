//! The report of finished runs: what it measures ([`Results`]), and writing its folder.
//!
//! `<out>/`: `report.md`, a self-contained `report.html` (charts inline as SVG, images embedded
//! as data URIs), `results.csv`, `results.json`, `curves/<run>_{roc,pro,loss,margins}.png` (the
//! Markdown report's charts) and `gallery/<run>/*.png` (the worst and best test images with their
//! heat maps). The folder is built next to its destination and renamed into place
//! ([`crate::stage`]), so a report is never half-written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ikd::{files, ImageResult, TeacherIdentity};

use crate::chart::{Axis, Chart, Series, BLUE, GREEN, GREY, ORANGE};
use crate::doc::{Block, ChartFigure, ImageFigure};
use crate::run::{load_runs, Run};
use crate::stage::{build_staged, copy, write};
use crate::table::{Cell, Row as TableRow, Table};
use crate::{Machine, PaperTable, ReportError, Result};

/// How to write a report.
///
/// ```
/// let o = ikd_report::ReportOptions::default();
/// assert!(o.paper.is_none());
/// assert_eq!(o.gallery, 3);
/// ```
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The paper's values to compare with (their columns appear when some run's category is in
    /// the table and its data is not synthetic); `None`: no comparison.
    pub paper: Option<PaperTable>,
    /// Test images per run in each half of the gallery (worst, best).
    pub gallery: usize,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions { paper: None, gallery: 3 }
    }
}

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

/// Writes the report of the finished runs `runs` (run folders, e.g. from
/// [`find_runs`](crate::find_runs)) into the folder `out`, replacing a report already there;
/// returns what it measured. `out` is built beside its destination and renamed into place.
///
/// ```no_run
/// use ikd_report::{find_runs, write_report, PaperTable, ReportOptions};
///
/// let runs = find_runs(&["runs/mvtec"])?;
/// let options = ReportOptions {
///     paper: Some(PaperTable::load("datasets/ikd_paper_mvtec.csv".as_ref())?),
///     ..ReportOptions::default()
/// };
/// let results = write_report(&runs, "reports/mvtec".as_ref(), &options)?;
/// println!("{} runs", results.categories.len());
/// # Ok::<(), ikd_report::ReportError>(())
/// ```
///
/// # Errors
/// [`ReportError::NoInput`] for no run; [`ReportError::File`] naming a run file that cannot be
/// read or is not what it should be;
/// errors writing the report (which then leave `out` as it was).
pub fn write_report(runs: &[PathBuf], out: &Path, options: &ReportOptions) -> Result<Results> {
    if runs.is_empty() {
        return Err(ReportError::NoInput);
    }
    let runs = load_runs(runs)?;
    let empty = PaperTable::default();
    let paper = options.paper.as_ref().unwrap_or(&empty);
    let rows: Vec<Row> = runs.iter().map(|r| make_row(r, paper)).collect();
    let results = Results {
        generated: crate::machine::utc_now(),
        runs: runs.iter().map(|r| r.dir.display().to_string()).collect(),
        means: means(&rows),
        categories: rows,
        settings: settings(&runs)?,
        teachers: teachers(&runs),
        random_teacher: runs.iter().any(|r| r.teacher.as_ref().is_some_and(|t| t.is_random())),
        machine: Machine::detect(),
    };
    build_staged(out, |dir| build(dir, &runs, &results, options))?;
    Ok(results)
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

/// A gallery image: where it comes from, and what it shows.
struct Shot {
    result: ImageResult,
    /// Fraction of the other class this image's score is on the right side of.
    margin: f64,
    src: PathBuf,
}

impl Shot {
    fn caption(&self) -> String {
        format!(
            "{}/{} — {} — score {:.4}",
            self.result.defect,
            self.result.stem,
            if self.result.anomalous { "defective" } else { "defect-free" },
            self.result.score
        )
    }
}

/// The `n` worst test images (lowest margin: missed defects, false alarms) and the `n` best
/// defective ones (highest margin), each once.
fn pick_gallery(run: &Run, n: usize) -> (Vec<Shot>, Vec<Shot>) {
    let res = &run.metrics.image_results;
    let good: Vec<f64> = res.iter().filter(|r| !r.anomalous).map(|r| r.score).collect();
    let bad: Vec<f64> = res.iter().filter(|r| r.anomalous).map(|r| r.score).collect();
    let frac = |v: &[f64], f: &dyn Fn(f64) -> bool| {
        if v.is_empty() {
            1.0
        } else {
            v.iter().filter(|&&s| f(s)).count() as f64 / v.len() as f64
        }
    };
    let mut shots: Vec<Shot> = res
        .iter()
        .map(|r| {
            let margin = if r.anomalous {
                frac(&good, &|s| s < r.score)
            } else {
                frac(&bad, &|s| s > r.score)
            };
            let src = run.dir.join("heatmaps").join(&r.defect).join(format!("{}.png", r.stem));
            Shot { result: r.clone(), margin, src }
        })
        .filter(|s| s.src.is_file())
        .collect();
    // Worst first; among equals, the anomalous image with the lower score / good with the higher.
    let key = |s: &Shot| if s.result.anomalous { s.result.score } else { -s.result.score };
    shots.sort_by(|a, b| a.margin.total_cmp(&b.margin).then(key(a).total_cmp(&key(b))));
    let worst: Vec<Shot> = shots.drain(..n.min(shots.len())).collect();
    let mut best: Vec<Shot> = shots.into_iter().filter(|s| s.result.anomalous).collect();
    best.reverse();
    best.truncate(n);
    (worst, best)
}

/// The ROC chart: the pixel-level curve of `metrics.json` when it has one, else the image-level
/// curve of the test images' scores (from `ikd_metrics::roc_curve`).
fn roc_chart(run: &Run) -> ChartFigure {
    let (points, level, note) = match &run.pixel_roc {
        Some(c) => (
            c.clone(),
            "pixel",
            format!(
                "pixel AUROC {:.1} % (the area under this curve)",
                run.metrics.pixel_auroc * 100.0
            ),
        ),
        None => {
            let scores: Vec<f64> = run.metrics.image_results.iter().map(|r| r.score).collect();
            let labels: Vec<bool> = run.metrics.image_results.iter().map(|r| r.anomalous).collect();
            match ikd_metrics::roc_curve(&scores, &labels) {
                Ok(c) => (
                    c.points().collect(),
                    "image",
                    format!(
                        "Each test image scored by its map's maximum; image AUROC {:.1} % (the \
                         area under this curve)",
                        c.area() * 100.0
                    ),
                ),
                Err(e) => (Vec::new(), "image", format!("no ROC curve: {e}")),
            }
        }
    };
    let mut chance = Series::new("chance", vec![(0.0, 0.0), (1.0, 1.0)], GREY);
    chance.dashed = true;
    ChartFigure {
        chart: Chart {
            id: format!("{}-roc", run.slug),
            title: format!("{}: {level}-level ROC", run.name),
            x: Axis::fixed("False positive rate", 0.0, 1.0, 0.2),
            y: Axis::fixed("True positive rate", 0.0, 1.0, 0.2),
            series: vec![Series::new(&format!("{level} ROC"), points, BLUE), chance],
        },
        png: format!("curves/{}_roc.png", run.slug),
        note,
    }
}

fn pro_chart(run: &Run) -> ChartFigure {
    ChartFigure {
        chart: Chart {
            id: format!("{}-pro", run.slug),
            title: format!("{}: PRO curve", run.name),
            x: Axis::fixed("False positive rate", 0.0, 0.3, 0.05),
            y: Axis::fixed("Per-region overlap", 0.0, 1.0, 0.2),
            series: vec![Series::new("PRO", run.metrics.pro_curve.clone(), BLUE)],
        },
        png: format!("curves/{}_pro.png", run.slug),
        note: if run.metrics.pixel_level {
            format!(
                "AU-PRO {:.1} % (the area up to FPR 0.3, divided by 0.3)",
                run.metrics.au_pro * 100.0
            )
        } else {
            "No defective test image has a mask: image-level metrics only, no PRO curve.".into()
        },
    }
}

fn step_axis(run: &Run) -> Axis {
    let last = run.log.steps.iter().copied().max().unwrap_or(1) as f64;
    Axis::fitted("Step", [0.0, last])
}

fn loss_chart(run: &Run) -> ChartFigure {
    let log = &run.log;
    let points: Vec<(f64, f64)> =
        log.steps.iter().zip(&log.loss).map(|(&s, &l)| (s as f64, l)).collect();
    let note = match log.loss.last() {
        Some(l) => format!("{} optimiser steps; last loss {l:.4}", log.steps.len()),
        None => "the training log is empty".into(),
    };
    ChartFigure {
        chart: Chart {
            id: format!("{}-loss", run.slug),
            title: format!("{}: training loss", run.name),
            x: step_axis(run),
            y: Axis::fitted("Loss", log.loss.iter().copied()),
            series: vec![Series::new("total loss", points, BLUE)],
        },
        png: format!("curves/{}_loss.png", run.slug),
        note,
    }
}

fn margins_chart(run: &Run) -> ChartFigure {
    let log = &run.log;
    let levels = log.margins.iter().map(Vec::len).max().unwrap_or(0);
    let colors = [ORANGE, GREEN, BLUE, GREY];
    let series: Vec<Series> = (0..levels)
        .map(|i| {
            let name = match run.config.loss.levels.get(i) {
                Some(l) if run.config.loss.levels.len() == levels => format!("level {l}"),
                _ => format!("margin {}", i + 1),
            };
            let points = log
                .steps
                .iter()
                .zip(&log.margins)
                .filter_map(|(&s, m)| m.get(i).map(|&v| (s as f64, v)))
                .collect();
            Series::new(&name, points, colors[i % colors.len()])
        })
        .collect();
    ChartFigure {
        chart: Chart {
            id: format!("{}-margins", run.slug),
            title: format!("{}: AHSM margins", run.name),
            x: step_axis(run),
            y: Axis::fitted("Margin", log.margins.iter().flatten().copied()),
            series,
        },
        png: format!("curves/{}_margins.png", run.slug),
        note: "The hard-sample margin of each feature level after every step".into(),
    }
}

/// The results table as shown: the paper's columns only when some run has a published value.
fn results_table(r: &Results) -> Table {
    let paper = r.categories.iter().any(|x| x.paper_pixel_auroc.is_some());
    let mut headers = vec!["run", "kind", "pixel AUROC"];
    if paper {
        headers.extend(["paper", "Δ"]);
    }
    headers.push("AU-PRO");
    if paper {
        headers.extend(["paper", "Δ"]);
    }
    headers.push("image AUROC");
    let mut t = Table::new("results", &headers);
    t.caption = Some(if paper {
        "Pixel AUROC and AU-PRO (FPR ≤ 0.3) in %, next to the values published in Cao et al. \
         2022 (Tables 1 and 2); Δ = ours − paper. Runs on data that is not MVTec AD's \
         (synthetic categories included) have no published value (—)."
            .into()
    } else {
        "Pixel AUROC, AU-PRO (FPR ≤ 0.3) and image AUROC in %.".into()
    });
    if r.categories.iter().any(|x| x.pixel_auroc.is_nan()) {
        if let Some(c) = t.caption.as_mut() {
            c.push_str(
                " Runs whose test images have no masks are scored at image level only: their \
                 pixel metrics are absent (—).",
            );
        }
    }
    let line = |auroc: f64, p_auroc: Option<f64>, pro: f64, p_pro: Option<f64>| {
        let mut cells = vec![Cell::num(auroc, 2)];
        if paper {
            cells.extend([Cell::opt(p_auroc, 2), Cell::diff(p_auroc.map(|p| auroc - p), 2)]);
        }
        cells.push(Cell::num(pro, 2));
        if paper {
            cells.extend([Cell::opt(p_pro, 2), Cell::diff(p_pro.map(|p| pro - p), 2)]);
        }
        cells
    };
    for x in &r.categories {
        let mut cells = vec![Cell::text(&x.name), Cell::text(&x.kind)];
        cells.extend(line(x.pixel_auroc, x.paper_pixel_auroc, x.au_pro, x.paper_au_pro));
        cells.push(Cell::num(x.image_auroc, 2));
        t.push(cells);
    }
    for m in &r.means {
        let mut cells =
            vec![Cell::text(format!("mean {} ({})", m.group, m.categories)), Cell::text("")];
        cells.extend(line(m.pixel_auroc, m.paper_pixel_auroc, m.au_pro, m.paper_au_pro));
        t.rows.push(TableRow { cells, summary: true });
    }
    t
}

fn decisions_table(r: &Results) -> Table {
    let mut t = Table::new(
        "decisions",
        &[
            "run",
            "image AUROC",
            "image AP",
            "image F1-max",
            "OK/NG threshold",
            "pixel AP",
            "pixel F1-max",
        ],
    );
    t.caption = Some(
        "Image-level decisions, in %: an image is anomalous (NG) when its score (the maximum of \
         its anomaly map) reaches the threshold of the best image F1 on the test set; pixel AP \
         and F1-max for the defect masks."
            .into(),
    );
    for x in &r.categories {
        t.push(vec![
            Cell::text(&x.name),
            Cell::num(x.image_auroc, 2),
            Cell::opt(x.image_ap, 2),
            Cell::opt(x.image_f1_max, 2),
            Cell::opt(x.image_threshold, 4),
            Cell::num(x.pixel_ap, 2),
            Cell::num(x.f1_max, 2),
        ]);
    }
    t
}

fn training_table(r: &Results) -> Table {
    let mut t = Table::new(
        "time",
        &[
            "run",
            "steps",
            "training s",
            "training images/s",
            "last loss",
            "last margins",
            "test images",
            "test images/s",
        ],
    );
    for x in &r.categories {
        let margins: Vec<String> = x.final_margins.iter().map(|m| format!("{m:.4}")).collect();
        t.push(vec![
            Cell::text(&x.name),
            Cell::int(x.train_steps),
            Cell::num(x.train_seconds, 1),
            Cell::num(x.train_images_per_s, 2),
            Cell::opt(x.final_loss, 4),
            Cell::text(margins.join(", ")),
            Cell::int(x.test_images as u64),
            Cell::num(x.test_images_per_s, 2),
        ]);
    }
    t
}

fn settings_table(r: &Results) -> Table {
    let mut t = Table::new("settings", &["setting", "value"]);
    for (k, vals) in &r.settings {
        let v = if vals.len() == 1 {
            vals.keys().next().cloned().unwrap_or_default()
        } else {
            vals.iter()
                .map(|(v, runs)| format!("{v} ({})", runs.join(", ")))
                .collect::<Vec<_>>()
                .join("; ")
        };
        t.push(vec![Cell::text(k), Cell::Code(v)]);
    }
    t
}

/// `results.csv`: every measured column at full precision, one line per run.
fn csv_table(r: &Results) -> Table {
    let mut t = Table::new(
        "results-csv",
        &[
            "category",
            "kind",
            "pixel_auroc",
            "au_pro",
            "paper_pixel_auroc",
            "paper_au_pro",
            "diff_pixel_auroc",
            "diff_au_pro",
            "pro_ikd200",
            "image_auroc",
            "pixel_ap",
            "f1_max",
            "image_ap",
            "image_f1_max",
            "image_threshold",
            "train_steps",
            "train_seconds",
            "train_images_per_s",
            "test_images",
            "test_images_per_s",
            "name",
            "run",
        ],
    );
    for x in &r.categories {
        t.push(vec![
            Cell::text(&x.category),
            Cell::text(&x.kind),
            Cell::num(x.pixel_auroc, 4),
            Cell::num(x.au_pro, 4),
            Cell::opt(x.paper_pixel_auroc, 4),
            Cell::opt(x.paper_au_pro, 4),
            Cell::opt(x.diff_pixel_auroc, 4),
            Cell::opt(x.diff_au_pro, 4),
            Cell::num(x.pro_ikd200, 4),
            Cell::num(x.image_auroc, 4),
            Cell::num(x.pixel_ap, 4),
            Cell::num(x.f1_max, 4),
            Cell::opt(x.image_ap, 4),
            Cell::opt(x.image_f1_max, 4),
            Cell::opt(x.image_threshold, 6),
            Cell::int(x.train_steps),
            Cell::num(x.train_seconds, 2),
            Cell::num(x.train_images_per_s, 3),
            Cell::int(x.test_images as u64),
            Cell::num(x.test_images_per_s, 3),
            Cell::text(&x.name),
            Cell::text(&x.run),
        ]);
    }
    t
}

/// The report's teacher paragraphs (plain text): which teacher, and what a random one means.
fn teacher_text(r: &Results) -> Vec<String> {
    let mut lines: Vec<String> = if r.teachers.len() == 1 {
        r.teachers.keys().map(|t| format!("Teacher: {t}.")).collect()
    } else {
        r.teachers.iter().map(|(t, runs)| format!("Teacher of {}: {t}.", runs.join(", "))).collect()
    };
    if r.random_teacher {
        lines.push(RANDOM_TEACHER_NOTE.to_string());
    }
    lines
}

/// The folders holding the runs, each once, in order.
fn run_parents(r: &Results) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for run in &r.runs {
        let p = Path::new(run).parent().map_or_else(|| run.clone(), |p| p.display().to_string());
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// The report's figures of one run.
struct RunFigures {
    name: String,
    charts: Vec<ChartFigure>,
    worst: Vec<ImageFigure>,
    best: Vec<ImageFigure>,
}

/// The report as blocks, for both renderers.
fn blocks(r: &Results, figs: Vec<RunFigures>) -> Vec<Block> {
    let folders: Vec<String> = run_parents(r).iter().map(|p| format!("`{p}`")).collect();
    let mut b = vec![
        Block::heading(1, "IKD report"),
        Block::para(format!(
            "Generated {} from {} run{} in {}.",
            r.generated,
            r.runs.len(),
            if r.runs.len() == 1 { "" } else { "s" },
            folders.join(", ")
        )),
    ];
    for (i, line) in teacher_text(r).into_iter().enumerate() {
        b.push(Block::Para { id: (i == 0).then(|| "teacher".to_string()), text: line });
    }
    b.push(Block::heading(2, "Results"));
    b.push(Block::Table(results_table(r)));
    b.push(Block::heading(2, "Image-level decisions"));
    b.push(Block::Table(decisions_table(r)));
    b.push(Block::heading(2, "Training and test time"));
    b.push(Block::Table(training_table(r)));
    b.push(Block::heading(2, "Settings"));
    b.push(Block::Table(settings_table(r)));
    b.push(Block::heading(2, "Machine"));
    b.push(Block::para(r.machine.describe()));
    b.push(Block::heading(2, "Curves"));
    b.push(Block::para(
        "Per run: the ROC curve (of the test images' scores, or pixel-level when `metrics.json` \
         has one) against chance, the PRO curve up to FPR 0.3, and from `train_log.jsonl` the \
         training loss and the AHSM margin of each feature level at every optimiser step.",
    ));
    let mut gallery = Vec::new();
    for f in figs {
        b.push(Block::heading(3, f.name.clone()));
        b.push(Block::Charts(f.charts));
        gallery.push(Block::heading(3, f.name));
        gallery.push(Block::heading(4, "Worst"));
        gallery.push(Block::Images(f.worst));
        gallery.push(Block::heading(4, "Best"));
        gallery.push(Block::Images(f.best));
    }
    b.push(Block::heading(2, "Gallery"));
    b.push(Block::para(
        "Each panel: the test image, its anomaly heat map, the ground truth outlined. Worst: \
         missed defects and false alarms (images whose score is on the wrong side of most of the \
         other class); best: the clearest detections.",
    ));
    b.extend(gallery);
    b
}

/// Writes every file of the report into the (staging) folder `dir`.
fn build(dir: &Path, runs: &[Run], results: &Results, options: &ReportOptions) -> Result<()> {
    let mut figs = Vec::new();
    for run in runs {
        let charts = vec![roc_chart(run), pro_chart(run), loss_chart(run), margins_chart(run)];
        for c in &charts {
            write(&dir.join(&c.png), &crate::png::render(&c.chart)?)?;
        }
        let (worst, best) = pick_gallery(run, options.gallery);
        let copy_shots = |shots: &[Shot]| -> Result<Vec<ImageFigure>> {
            shots
                .iter()
                .map(|s| {
                    let rel =
                        format!("gallery/{}/{}_{}.png", run.slug, s.result.defect, s.result.stem);
                    copy(&s.src, &dir.join(&rel))?;
                    Ok(ImageFigure { rel, caption: s.caption() })
                })
                .collect()
        };
        let (worst, best) = (copy_shots(&worst)?, copy_shots(&best)?);
        if worst.is_empty() && options.gallery > 0 {
            tracing::warn!(
                "{}: no heat-map panels in {}/heatmaps: the gallery is empty",
                run.name,
                run.dir.display()
            );
        }
        figs.push(RunFigures { name: run.name.clone(), charts, worst, best });
    }
    let blocks = blocks(results, figs);
    let json = serde_json::to_string_pretty(results)
        .map_err(|e| ikd::Error::bad_file(&dir.join("results.json"), e.to_string()))?;
    write(&dir.join("results.csv"), csv_table(results).to_csv().as_bytes())?;
    write(&dir.join("results.json"), json.as_bytes())?;
    write(&dir.join("report.md"), crate::markdown::render(&blocks).as_bytes())?;
    write(&dir.join("report.html"), crate::html::render("IKD report", &blocks, dir)?.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, kind: &str, auroc: f64, paper: Option<f64>) -> Row {
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

    fn results(rows: Vec<Row>) -> Results {
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

    #[test]
    fn the_paper_columns_appear_only_with_published_values() {
        let with = results_table(&results(vec![
            row("carpet", "texture", 90.0, Some(98.71)),
            row("x", "synthetic", 60.0, None),
        ]));
        assert_eq!(with.headers.len(), 9);
        let md = with.to_markdown();
        assert!(md.contains("| carpet | texture | 90.00 | 98.71 | -8.71 |"), "{md}");
        assert!(md.contains("| x | synthetic | 60.00 | — | — | 55.00 | — | — | 0.00 |"), "{md}");
        assert!(md.contains("| **mean all (2)** |  | **75.00** | **—** |"), "{md}");
        let without = results_table(&results(vec![row("x", "synthetic", 60.0, None)]));
        assert_eq!(without.headers, ["run", "kind", "pixel AUROC", "AU-PRO", "image AUROC"]);
        assert!(!without.to_html().contains("paper"));
    }

    #[test]
    fn the_csv_has_every_column_at_full_precision() {
        let csv = csv_table(&results(vec![row("a,b", "synthetic", 70.0, None)])).to_csv();
        let line = csv.lines().nth(1).unwrap();
        assert!(line.starts_with("\"a,b\",synthetic,70.0000,65.0000,,,,,"), "{line}");
        assert!(line.ends_with(",\"a,b\",\"runs/a,b\""), "{line}");
        assert_eq!(csv.lines().next().unwrap().split(',').count(), 22);
    }
}
