//! Finding finished runs and reading what a report needs from them, through `ikd`'s run files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ikd::{LogEntry, RunDir, RunState, TeacherIdentity, TestMetrics, TrainConfig};

use crate::{ReportError, Result};

/// Whether `dir` holds a finished run: a trained student and its test metrics.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// assert!(!ikd_report::is_finished(dir.path()));
/// std::fs::write(dir.path().join(ikd::files::STUDENT), b"")?;
/// std::fs::write(dir.path().join(ikd::files::METRICS), b"{}")?;
/// assert!(ikd_report::is_finished(dir.path()));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn is_finished(dir: &Path) -> bool {
    RunDir::new(dir).state() == RunState::Tested
}

/// The finished run folders that `paths` name: each path is a finished run itself, or a folder
/// whose subfolders are runs (unfinished ones are left out, with a log line). The runs of each
/// path come sorted, in the order of the paths, each once.
///
/// ```no_run
/// let runs = ikd_report::find_runs(&["runs/mvtec", "runs/extra/bottle"])?;
/// println!("{} runs", runs.len());
/// # Ok::<(), ikd_report::ReportError>(())
/// ```
///
/// # Errors
/// [`ReportError::NoInput`] for no path, [`ReportError::File`] for a path that cannot be read (or
/// does not exist), [`ReportError::NoFinishedRun`] naming a path that is neither a finished run
/// nor a folder holding one.
pub fn find_runs<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<PathBuf>> {
    if paths.is_empty() {
        return Err(ReportError::NoInput);
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for path in paths.iter().map(AsRef::as_ref) {
        let found = if is_finished(path) {
            vec![path.to_path_buf()]
        } else {
            let mut subs: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| ikd::Error::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            subs.sort();
            let (done, left): (Vec<PathBuf>, Vec<PathBuf>) =
                subs.into_iter().partition(|p| is_finished(p));
            // Beside finished runs, unfinished ones are worth a word (without any, the error says
            // enough).
            if !done.is_empty() {
                for p in left.iter().filter(|p| RunDir::new(p).state() != RunState::Empty) {
                    tracing::warn!(
                        "{}: not a finished run (no student or no metrics), left out",
                        p.display()
                    );
                }
            }
            done
        };
        if found.is_empty() {
            return Err(ReportError::NoFinishedRun { path: path.to_path_buf() });
        }
        for f in found {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

/// What `train_log.jsonl` says, step by step.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TrainingLog {
    /// Optimiser steps, as logged.
    pub steps: Vec<u64>,
    /// Total loss of each step.
    pub loss: Vec<f64>,
    /// The AHSM margins after each step, one per feature level.
    pub margins: Vec<Vec<f64>>,
    /// Seconds of training: every step's images over its measured throughput.
    pub seconds: f64,
}

impl TrainingLog {
    /// Reads a run's log; `batch` is the run's batch size (for the training time).
    pub(crate) fn load(path: &Path, batch: usize) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ikd::Error::io(path, e))?;
        let mut log = TrainingLog::default();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let e: LogEntry = serde_json::from_str(line).map_err(|err| {
                ikd::Error::bad_file(
                    path,
                    format!("line {}: not a training log entry: {err}", i + 1),
                )
            })?;
            if e.images_per_s > 0.0 {
                log.seconds += batch as f64 / e.images_per_s;
            }
            log.steps.push(e.step);
            log.loss.push(e.loss);
            log.margins.push(e.margins);
        }
        Ok(log)
    }
}

/// A finished run, read.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub dir: PathBuf,
    /// The run's name in the report: its category, or the category and its folder's parent when
    /// several runs have the category.
    pub name: String,
    /// `name` as a file name (curves and gallery paths).
    pub slug: String,
    pub config: TrainConfig,
    /// `None` for runs trained before runs recorded their teacher.
    pub teacher: Option<TeacherIdentity>,
    pub metrics: TestMetrics,
    /// A pixel-level ROC curve, when `metrics.json` has one (`roc_curve`: `[[fpr, tpr], ...]`).
    pub pixel_roc: Option<Vec<(f64, f64)>>,
    pub log: TrainingLog,
}

fn load_run(dir: &Path) -> Result<Run> {
    let run = RunDir::new(dir);
    let config = run.load_config()?;
    let tpath = run.teacher();
    let teacher = tpath.is_file().then(|| TeacherIdentity::load(&tpath)).transpose()?;
    let mpath = run.metrics();
    let text = std::fs::read_to_string(&mpath).map_err(|e| ikd::Error::io(&mpath, e))?;
    let metrics: TestMetrics = serde_json::from_str(&text)
        .map_err(|e| ikd::Error::bad_file(&mpath, format!("not ikd test metrics: {e}")))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ikd::Error::bad_file(&mpath, e.to_string()))?;
    let pixel_roc = value
        .get("roc_curve")
        .and_then(|v| serde_json::from_value::<Vec<(f64, f64)>>(v.clone()).ok())
        .filter(|c| !c.is_empty());
    let log = TrainingLog::load(&run.train_log(), config.batch_size)?;
    Ok(Run {
        dir: dir.to_path_buf(),
        name: config.category.clone(),
        slug: String::new(),
        config,
        teacher,
        metrics,
        pixel_roc,
        log,
    })
}

/// `s` with everything but ASCII letters, digits, `-` and `_` replaced by `_`.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect()
}

/// Reads the runs in `dirs` and names them: by category, and where several share a category, by
/// category and parent folder (`carpet (hub)`); file names are unique too.
pub(crate) fn load_runs(dirs: &[PathBuf]) -> Result<Vec<Run>> {
    let mut runs: Vec<Run> = dirs.iter().map(|d| load_run(d)).collect::<Result<_>>()?;
    let mut per_category: BTreeMap<String, usize> = BTreeMap::new();
    for r in &runs {
        *per_category.entry(r.config.category.clone()).or_default() += 1;
    }
    let mut taken: Vec<String> = Vec::new();
    for r in &mut runs {
        if per_category[&r.config.category] > 1 {
            let parent = r
                .dir
                .parent()
                .and_then(Path::file_name)
                .map_or_else(|| r.dir.display().to_string(), |n| n.to_string_lossy().into_owned());
            r.name = format!("{} ({parent})", r.config.category);
        }
        let base = slug(&r.name);
        let mut candidate = base.clone();
        let mut k = 2;
        while taken.contains(&candidate) {
            candidate = format!("{base}-{k}");
            k += 1;
        }
        taken.push(candidate.clone());
        r.slug = candidate;
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_keep_only_safe_characters() {
        assert_eq!(slug("carpet (hub)"), "carpet__hub_");
        assert_eq!(slug("metal_nut"), "metal_nut");
    }

    #[test]
    fn the_log_gives_steps_losses_margins_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train_log.jsonl");
        let line = |step: u64, loss: f64| {
            serde_json::to_string(&LogEntry {
                step,
                epoch: 0,
                loss,
                margins: vec![0.1 * step as f64, 0.2],
                per_level: vec![loss, loss],
                images_per_s: 4.0,
                wall_s: 0.6,
            })
            .unwrap()
        };
        std::fs::write(&p, format!("{}\n\n{}\n", line(1, 0.9), line(2, 0.7))).unwrap();
        let log = TrainingLog::load(&p, 2).unwrap();
        assert_eq!(log.steps, [1, 2]);
        assert_eq!(log.loss, [0.9, 0.7]);
        assert_eq!(log.margins[1], [0.2, 0.2]);
        assert_eq!(log.seconds, 1.0);
        std::fs::write(&p, format!("{}\nnot json\n", line(1, 0.9))).unwrap();
        let e = TrainingLog::load(&p, 2).unwrap_err().to_string();
        assert!(e.contains("train_log.jsonl: line 2: not a training log entry"), "{e}");
    }
}
