//! Writing the report of finished runs: what they measured ([`crate::results`]), their figures
//! ([`crate::figures`]) and tables ([`crate::tables`]) put together in one document.
//!
//! `<out>/`: `report.md`, a self-contained `report.html` (charts inline as SVG, images embedded
//! as data URIs), `results.csv`, `results.json`, `curves/<run>_{roc,pro,loss,margins}.png` (the
//! Markdown report's charts) and `gallery/<run>/*.png` (the worst and best test images with their
//! heat maps). The folder is built next to its destination and renamed into place
//! ([`crate::stage`]), so a report is never half-written.

use std::path::{Path, PathBuf};

use crate::doc::Block;
use crate::figures::{write_run_figures, RunFigures};
use crate::results::{Results, RANDOM_TEACHER_NOTE};
use crate::run::{load_runs, Run};
use crate::stage::{build_staged, write};
use crate::tables::{csv_table, decisions_table, results_table, settings_table, training_table};
use crate::{PaperTable, ReportError, Result};

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
    let results = crate::results::measure(&runs, options.paper.as_ref().unwrap_or(&empty))?;
    build_staged(out, |dir| build(dir, &runs, &results, options))?;
    Ok(results)
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
    let figs: Vec<RunFigures> = runs
        .iter()
        .map(|run| write_run_figures(dir, run, options.gallery))
        .collect::<Result<_>>()?;
    let blocks = blocks(results, figs);
    let json = serde_json::to_string_pretty(results)
        .map_err(|e| ikd::Error::bad_file(&dir.join("results.json"), e.to_string()))?;
    write(&dir.join("results.csv"), csv_table(results).to_csv().as_bytes())?;
    write(&dir.join("results.json"), json.as_bytes())?;
    write(&dir.join("report.md"), crate::markdown::render(&blocks).as_bytes())?;
    write(&dir.join("report.html"), crate::html::render("IKD report", &blocks, dir)?.as_bytes())?;
    Ok(())
}
