//! [`RunDir`]: the one model of a run folder — the name of every file in it, the checkpoint
//! format ([`checkpoint`]), what state a run is in and what it needs next ([`NextStep`]), and
//! the rule for continuing it ([`RunDir::settings_for`]). Training, testing, prediction, the
//! developer tasks and the report go through it.

pub mod checkpoint;

use std::path::{Path, PathBuf};

use crate::{Error, Result, TestMetrics, TrainConfig};

/// File names inside a run folder.
pub mod files {
    /// Every setting of the run, resolved (TOML: `ikd train --config` reads it).
    pub const CONFIG: &str = "config.toml";
    /// One JSON object per optimiser step.
    pub const TRAIN_LOG: &str = "train_log.jsonl";
    /// The last checkpoint.
    pub const CHECKPOINT: &str = "checkpoint.safetensors";
    /// The trained student (timm layout), written when training is finished.
    pub const STUDENT: &str = "student.safetensors";
    /// What `ikd test` measured.
    pub const METRICS: &str = "metrics.json";
    /// Which teacher the run was trained with ([`crate::TeacherIdentity`]).
    pub const TEACHER: &str = "teacher.json";
    /// The run's own copy (or hard link) of its teacher's weights file.
    pub const TEACHER_WEIGHTS: &str = "teacher.safetensors";
    /// Heat-map panels of the test images (`heatmaps/<defect>/<stem>.png`).
    pub const HEATMAPS: &str = "heatmaps";
    /// Anomaly maps in MVTec AD's evaluation layout (`anomaly_maps/<category>/test/...`).
    pub const ANOMALY_MAPS: &str = "anomaly_maps";
}

/// One line of `train_log.jsonl`.
///
/// ```
/// let e = ikd::LogEntry { step: 1, epoch: 0, loss: 0.5, margins: vec![0.1, 0.2], per_level: vec![0.4, 0.55], images_per_s: 3.0, wall_s: 0.7 };
/// assert!(serde_json::to_string(&e).unwrap().contains("\"margins\""));
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogEntry {
    /// Optimiser step, counted from 1.
    pub step: u64,
    /// Epoch, counted from 0.
    pub epoch: u64,
    /// The step's total loss.
    pub loss: f64,
    /// The AHSM margin of each level after the step.
    pub margins: Vec<f64>,
    /// The loss of each level.
    pub per_level: Vec<f64>,
    /// Training throughput of this step (its forward, backward and update).
    pub images_per_s: f64,
    /// Wall time from the previous step's end (or the start of training) to this step's end: the
    /// step, plus any wait for its batch and the logging. (0 in logs of older versions.)
    #[serde(default)]
    pub wall_s: f64,
}

/// How far a run has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// No run: the folder is missing, empty or holds something else.
    Empty,
    /// Settings written, no checkpoint yet (stopped before its first epoch ended).
    Started,
    /// A checkpoint to resume from; training has not finished.
    Checkpointed,
    /// Training finished: `student.safetensors` is there, but no test.
    Trained,
    /// Trained and tested: `metrics.json` holds the thresholds of its decisions.
    Tested,
}

/// What a run folder needs next to become a tested run ([`RunDir::next_step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NextStep {
    /// Nothing there: start training.
    Start,
    /// A start that never wrote a checkpoint: clear it ([`RunDir::clear_start`]), start again.
    Restart,
    /// Continue training from the checkpoint.
    Resume,
    /// Trained: test it.
    Test,
    /// Tested: nothing to do.
    Nothing,
}

/// A run folder (see the engine's README for its files).
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let run = ikd::RunDir::new(dir.path().join("bottle"));
/// assert_eq!((run.state(), run.next_step()), (ikd::RunState::Empty, ikd::NextStep::Start));
/// ikd::TrainConfig::default().save(&run.config())?;
/// assert_eq!((run.state(), run.next_step()), (ikd::RunState::Started, ikd::NextStep::Restart));
/// assert_eq!(run.load_config()?, ikd::TrainConfig::default());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// The run folder at `path` (nothing is read or made).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `config.toml`: the run's settings.
    pub fn config(&self) -> PathBuf {
        self.path.join(files::CONFIG)
    }

    /// `checkpoint.safetensors`.
    pub fn checkpoint(&self) -> PathBuf {
        self.path.join(files::CHECKPOINT)
    }

    /// `student.safetensors`.
    pub fn student(&self) -> PathBuf {
        self.path.join(files::STUDENT)
    }

    /// `train_log.jsonl`.
    pub fn train_log(&self) -> PathBuf {
        self.path.join(files::TRAIN_LOG)
    }

    /// `metrics.json`.
    pub fn metrics(&self) -> PathBuf {
        self.path.join(files::METRICS)
    }

    /// `teacher.json`.
    pub fn teacher(&self) -> PathBuf {
        self.path.join(files::TEACHER)
    }

    /// `teacher.safetensors`.
    pub fn teacher_weights(&self) -> PathBuf {
        self.path.join(files::TEACHER_WEIGHTS)
    }

    /// `heatmaps/<defect>/<stem>.png`.
    pub fn heatmap(&self, defect: &str, stem: &str) -> PathBuf {
        self.path.join(files::HEATMAPS).join(defect).join(format!("{stem}.png"))
    }

    /// `anomaly_maps/<category>/test/<defect>/<stem>.tiff` (MVTec AD's evaluation layout).
    pub fn anomaly_map(&self, category: &str, defect: &str, stem: &str) -> PathBuf {
        self.path
            .join(files::ANOMALY_MAPS)
            .join(category)
            .join("test")
            .join(defect)
            .join(format!("{stem}.tiff"))
    }

    /// The run's state, from the files it holds.
    pub fn state(&self) -> RunState {
        if self.student().is_file() {
            if self.metrics().is_file() {
                RunState::Tested
            } else {
                RunState::Trained
            }
        } else if !self.config().is_file() {
            RunState::Empty
        } else if self.checkpoint().is_file() {
            RunState::Checkpointed
        } else {
            RunState::Started
        }
    }

    /// What the run needs next, from its [`state`](Self::state): the one decision of
    /// [`crate::run`], `ikd run`, `cargo xtask reproduce` and the SLURM job script.
    pub fn next_step(&self) -> NextStep {
        match self.state() {
            RunState::Empty => NextStep::Start,
            RunState::Started => NextStep::Restart,
            RunState::Checkpointed => NextStep::Resume,
            RunState::Trained => NextStep::Test,
            RunState::Tested => NextStep::Nothing,
        }
    }

    /// The run's settings; a folder without any says it holds no run.
    pub fn load_config(&self) -> Result<TrainConfig> {
        let path = self.config();
        if !path.is_file() {
            return Err(Error::run_state(
                &self.path,
                format!("holds no run: it has no {}", files::CONFIG),
            ));
        }
        TrainConfig::load(&path)
    }

    /// The resume rule: the settings to continue this run with when `given` were asked for —
    /// the saved ones, with `given`'s device (where it computes, not what it learns: a run may
    /// move to another GPU) and `max_steps` (where this invocation stops). Any other setting
    /// that differs is an error naming each (`epochs: 50 saved, 100 given`).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let run = ikd::RunDir::new(dir.path());
    /// let saved = ikd::TrainConfig { epochs: 4, ..Default::default() };
    /// saved.save(&run.config())?;
    /// let given = ikd::TrainConfig { max_steps: Some(2), device: "cuda:1".into(), ..saved.clone() };
    /// assert_eq!(run.settings_for(&given)?, given);
    /// let other = ikd::TrainConfig { epochs: 5, ..saved };
    /// let err = run.settings_for(&other).unwrap_err().to_string();
    /// assert!(err.contains("other settings (epochs: 4 saved, 5 given)"), "{err}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn settings_for(&self, given: &TrainConfig) -> Result<TrainConfig> {
        let saved = self.load_config()?;
        let (device, max_steps) = (given.device.clone(), given.max_steps);
        let same_place = TrainConfig {
            device: saved.device.clone(),
            max_steps: saved.max_steps,
            ..given.clone()
        };
        let changes = same_place.changes_from(&saved);
        if !changes.is_empty() {
            return Err(Error::run_state(
                &self.path,
                format!(
                    "was trained with other settings ({}): continue it with its own, or train \
                     a new run",
                    changes.join("; ")
                ),
            ));
        }
        Ok(TrainConfig { device, max_steps, ..saved })
    }

    /// Removes what a start of training writes before its first checkpoint (settings, teacher,
    /// log), so that a run stopped before it ([`RunState::Started`]) can be started again; a file
    /// that is not there is no error.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let run = ikd::RunDir::new(dir.path());
    /// std::fs::write(run.config(), "epochs = 1")?;
    /// run.clear_start()?;
    /// assert_eq!(run.state(), ikd::RunState::Empty);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear_start(&self) -> Result<()> {
        for p in [self.config(), self.train_log(), self.teacher(), self.teacher_weights()] {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&p, e)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Keeps the log lines of steps up to `step` (those after a checkpoint run again when the
    /// run is continued).
    pub(crate) fn truncate_log(&self, step: u64) -> Result<()> {
        let path = self.train_log();
        let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
        let mut kept = String::new();
        for line in text.lines() {
            match serde_json::from_str::<LogEntry>(line) {
                Ok(e) if e.step <= step => {
                    kept.push_str(line);
                    kept.push('\n');
                }
                _ => {}
            }
        }
        if kept == text {
            return Ok(());
        }
        Ok(ikd_io::atomic_write(&path, kept.as_bytes())?)
    }

    /// What the run's test measured; `None` for a run not tested.
    pub fn load_metrics(&self) -> Result<Option<TestMetrics>> {
        let path = self.metrics();
        if !path.is_file() {
            return Ok(None);
        }
        crate::fsutil::read_json(&path, "ikd test's metrics").map(Some)
    }

    /// Writes what the run's test measured.
    pub(crate) fn save_metrics(&self, m: &TestMetrics) -> Result<()> {
        crate::fsutil::write_json(&self.metrics(), m)
    }
}

impl AsRef<Path> for RunDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// Test hooks, read from the environment: only the workspace's tests set them.
pub(crate) mod test_hooks {
    /// `IKD_TEST_CHECKPOINT_DELAY_MS`: sleep this long before a checkpoint's bytes are written,
    /// so that a test can deliver a signal while an epoch's checkpoint is being written.
    pub(crate) fn before_checkpoint_write() {
        let delay = std::env::var("IKD_TEST_CHECKPOINT_DELAY_MS").ok();
        if let Some(ms) = delay.and_then(|v| v.parse::<u64>().ok()) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }
}
