//! [`RunDir`]: the one model of a run folder — where each file lives and what state the run is
//! in. Training, testing, prediction, the developer tasks and the report go through it.

use std::path::{Path, PathBuf};

use crate::train::files;
use crate::{Result, TestMetrics, TrainConfig};

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

/// A run folder (see the engine's README for its files).
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let run = ikd::RunDir::new(dir.path().join("bottle"));
/// assert_eq!(run.state(), ikd::RunState::Empty);
/// ikd::TrainConfig::default().save(&run.config())?;
/// assert_eq!(run.state(), ikd::RunState::Started);
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

    /// Where new runs keep their settings (`config.toml`).
    pub fn config(&self) -> PathBuf {
        self.path.join(files::CONFIG)
    }

    /// The settings file the run has: `config.toml`, or `config.json` of a run made before it.
    pub fn saved_config(&self) -> Option<PathBuf> {
        [files::CONFIG, files::LEGACY_CONFIG]
            .iter()
            .map(|f| self.path.join(f))
            .find(|p| p.is_file())
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
    pub fn clear_start(&self) -> std::io::Result<()> {
        let files =
            [files::CONFIG, files::LEGACY_CONFIG, files::TRAIN_LOG].map(|f| self.path.join(f));
        for p in files.into_iter().chain([self.teacher(), self.teacher_weights()]) {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
                }
                _ => {}
            }
        }
        Ok(())
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
        self.path.join("heatmaps").join(defect).join(format!("{stem}.png"))
    }

    /// `anomaly_maps/<category>/test/<defect>/<stem>.tiff` (MVTec AD's evaluation layout).
    pub fn anomaly_map(&self, category: &str, defect: &str, stem: &str) -> PathBuf {
        self.path
            .join("anomaly_maps")
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
        } else if self.saved_config().is_none() {
            RunState::Empty
        } else if self.checkpoint().is_file() {
            RunState::Checkpointed
        } else {
            RunState::Started
        }
    }

    /// The run's settings; a folder without any says it holds no run.
    pub fn load_config(&self) -> Result<TrainConfig> {
        match self.saved_config() {
            Some(path) => TrainConfig::load(&path),
            None => Err(crate::Error::Config(format!(
                "{} holds no run: it has no {}",
                self.path.display(),
                files::CONFIG
            ))),
        }
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
