//! Training a student: the loop over epochs and steps, with a checkpoint at every epoch's end
//! and when training stops early, and the training log (`train_log.jsonl`). Where each file
//! goes and what a checkpoint holds is the run folder's business ([`crate::RunDir`]).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use ikd_data::{Loader, Order};
use ikd_io::progress::ProgressBar;

use crate::checkpoint::{Checkpoint, Position};
use crate::{
    parse_device, Distiller, Error, LogEntry, Result, RunDir, TeacherIdentity, TrainConfig,
};

/// What [`train`] did.
///
/// ```no_run
/// let config = ikd::TrainConfig { data_root: "data".into(), category: "carpet".into(), ..Default::default() };
/// let s = ikd::train(&config, "runs/carpet".as_ref(), ikd::TrainOptions::default())?;
/// if !s.finished {
///     println!("stopped at step {}: train again with `resume: true` to go on", s.steps);
/// }
/// # Ok::<(), ikd::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainSummary {
    /// Optimiser steps taken in all (including before a resume).
    pub steps: u64,
    /// Whole epochs completed.
    pub epochs_done: u64,
    /// Whether every epoch ran (false when stopped by `max_steps` or [`TrainOptions::stop`]).
    pub finished: bool,
    /// Whether [`TrainOptions::stop`] ended training early (a checkpoint of the last step was
    /// written).
    pub interrupted: bool,
    /// Wall time of this invocation's training.
    pub seconds: f64,
    /// Training images per second in this invocation.
    pub images_per_s: f64,
    /// Wall time spent checking the training images before the first step (their pixels are
    /// decoded while training runs).
    pub loading_seconds: f64,
    /// The last step's loss.
    pub last_loss: Option<f64>,
}

/// Options of one invocation of [`train`] that are not settings of the run.
///
/// ```
/// let o = ikd::TrainOptions { resume: true, ..Default::default() };
/// assert!(o.resume && o.stop.is_none() && o.kernels == ikd::KernelPolicy::default());
/// ```
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Continue from `checkpoint.safetensors` with the run's saved settings.
    pub resume: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// Set (by a signal handler, another thread, …) to stop training: the current step
    /// finishes, a checkpoint of it is written and [`train`] returns with
    /// [`TrainSummary::interrupted`]. Resuming then gives the same student as an uninterrupted
    /// run.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// The CPU kernels the networks run on (the binaries read it from the environment with
    /// `KernelPolicy::from_env`).
    pub kernels: ikd_kernels::KernelPolicy,
    /// How far the training loader reads ahead and how many decoded images it keeps.
    pub loader: ikd_data::LoaderOptions,
}

/// Trains a student in `run_dir` (created if needed) with `config`.
///
/// A new run refuses a `run_dir` that already holds a run, unless `opts.resume`, which continues
/// from its checkpoint with its saved settings ([`RunDir::settings_for`]: only the device and
/// `max_steps` may differ) and gives the same student as an uninterrupted run. Training that
/// stops before its last epoch (`max_steps`, [`TrainOptions::stop`]) leaves a checkpoint and no
/// student. A non-finite loss stops training with an error; the last checkpoint is kept.
///
/// ```no_run
/// let config = ikd::TrainConfig { data_root: "data".into(), category: "bottle".into(), ..Default::default() };
/// let summary = ikd::train(&config, "runs/bottle".as_ref(), ikd::TrainOptions::default())?;
/// # Ok::<(), ikd::Error>(())
/// ```
pub fn train(config: &TrainConfig, run_dir: &Path, opts: TrainOptions) -> Result<TrainSummary> {
    config.validate()?;
    let run = RunDir::new(run_dir);
    let config = if opts.resume {
        run.settings_for(config)?
    } else if run.state() != crate::RunState::Empty || run.checkpoint().exists() {
        return Err(Error::run_state(
            run_dir,
            "already holds a run: continue it (resume), or choose another run folder".into(),
        ));
    } else {
        config.clone()
    };
    let device = parse_device(&config.device)?;
    // the test images' masks do not matter for training
    let category = config.open_category(None, ikd_data::MaskPolicy::AllowMissing)?;
    // Every image's header is read before anything is written, and a fresh run whose first epoch
    // meets an undecodable image is removed again: a start that fails on a bad image leaves no
    // run behind.
    let loading = Instant::now();
    let data = Loader::train(&category, &config.transform()?, opts.loader)?;
    let loading_seconds = loading.elapsed().as_secs_f64();
    let mut t = if opts.resume && run.checkpoint().is_file() {
        Trainer::resume(run, config, device, &opts)?
    } else {
        Trainer::start(run, config, device, &opts)?
    };
    let per_epoch = data.len().div_ceil(t.config.batch_size) as u64;
    let total = per_epoch * t.config.epochs;
    let limit = t.config.max_steps.map_or(total, |m| m.min(total));
    t.pb = ikd_io::progress::bar(limit, "train", opts.progress);
    t.pb.set_position(t.position.step);
    let mut stopped = false;
    while !stopped && t.position.epoch < t.config.epochs && t.position.step < limit {
        stopped = t.run_epoch(&data, limit)? == EpochEnd::Stopped;
        if t.position.batch == per_epoch {
            // the epoch's end, however the loop left it
            t.position = Position { epoch: t.position.epoch + 1, batch: 0, ..t.position };
            t.checkpoint()?;
        }
        // a stop asked for while the checkpoint was written counts too
        stopped |= t.stop_requested();
    }
    t.finish(stopped, loading_seconds)
}

/// How one epoch's loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EpochEnd {
    /// Every batch of the epoch ran, or the step limit was reached.
    Ran,
    /// [`TrainOptions::stop`] was set: the step finished, no more.
    Stopped,
}

/// One invocation of [`train`] in progress.
struct Trainer {
    run: RunDir,
    config: TrainConfig,
    device: Device,
    distiller: Distiller,
    position: Position,
    /// Where the last checkpoint of this invocation was written.
    saved_at: Option<Position>,
    /// `Some(made_dir)` while this invocation started the run and has not checkpointed it: a
    /// failed start is then removed (with the folder when it made it).
    fresh: Option<bool>,
    log: File,
    pb: ProgressBar,
    stop: Option<Arc<AtomicBool>>,
    started: Instant,
    step_end: Instant,
    images: usize,
    last_loss: Option<f64>,
}

impl Trainer {
    /// A new run: the teacher resolved, the pair built, settings and teacher written.
    fn start(
        run: RunDir,
        config: TrainConfig,
        device: Device,
        opts: &TrainOptions,
    ) -> Result<Self> {
        let made_dir = !run.path().exists();
        let backbone = config.backbone()?;
        let teacher =
            TeacherIdentity::resolve(&backbone.name, &config.teacher_weights, config.seed)?;
        tracing::info!("teacher: {}", teacher.describe());
        let student_init = config.student_init.clone();
        let distiller =
            config.distiller_with(&teacher.weights(), student_init.as_deref(), &device)?;
        let written = (|| {
            check_writable(run.path())?;
            // a log of a start that never checkpointed is not this run's
            let _ = std::fs::remove_file(run.train_log());
            config.save(&run.config())?;
            teacher.keep_in(run.path())?;
            teacher.save(&run.teacher())
        })();
        if let Err(e) = written {
            // a start that did not take leaves no run behind
            if !opts.resume {
                discard_start(&run, made_dir);
            }
            return Err(e);
        }
        let fresh = (!opts.resume).then_some(made_dir);
        Self::new(
            run,
            config,
            device,
            distiller,
            Position { step: 0, epoch: 0, batch: 0 },
            fresh,
            opts,
        )
    }

    /// A run continued from its checkpoint, with the run's own teacher.
    fn resume(
        run: RunDir,
        config: TrainConfig,
        device: Device,
        opts: &TrainOptions,
    ) -> Result<Self> {
        // the run's own teacher: a newer hub revision or a changed file would change the run
        let mut distiller = config.distiller_of_run(run.path(), &device)?;
        let ck = Checkpoint::load(&run.checkpoint(), &device)?;
        distiller.restore_training_state(&ck.state)?;
        run.truncate_log(ck.position.step)?;
        let p = ck.position;
        tracing::info!(
            step = p.step,
            epoch = p.epoch,
            "resuming from {}",
            run.checkpoint().display()
        );
        Self::new(run, config, device, distiller, p, None, opts)
    }

    fn new(
        run: RunDir,
        config: TrainConfig,
        device: Device,
        mut distiller: Distiller,
        position: Position,
        fresh: Option<bool>,
        opts: &TrainOptions,
    ) -> Result<Self> {
        distiller.set_kernel_policy(opts.kernels);
        tracing::info!("kernels: {}", opts.kernels.path());
        let path = run.train_log();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let now = Instant::now();
        Ok(Self {
            run,
            config,
            device,
            distiller,
            position,
            saved_at: None,
            fresh,
            log,
            pb: ProgressBar::hidden(),
            stop: opts.stop.clone(),
            started: now,
            step_end: now,
            images: 0,
            last_loss: None,
        })
    }

    fn stop_requested(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }

    /// The steps of the current epoch from its current batch, until the epoch's end, the step
    /// `limit` or a stop.
    fn run_epoch(&mut self, data: &Loader, limit: u64) -> Result<EpochEnd> {
        let order = if self.config.shuffle {
            Order::Shuffled { seed: self.config.seed, epoch: self.position.epoch }
        } else {
            Order::Sequential
        };
        let skip = self.position.batch as usize;
        for batch in data.epoch(self.config.batch_size, order, skip, &self.device)? {
            if self.position.step >= limit {
                break;
            }
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    if let Some(made_dir) = self.fresh {
                        // nothing of the user's is in the run yet: the start did not take
                        discard_start(&self.run, made_dir);
                    }
                    return Err(e.into());
                }
            };
            self.step(&batch.images, batch.indices.len())?;
            if self.stop_requested() {
                return Ok(EpochEnd::Stopped);
            }
        }
        Ok(EpochEnd::Ran)
    }

    /// One optimiser step, logged.
    fn step(&mut self, images: &candle_core::Tensor, n: usize) -> Result<()> {
        let t0 = Instant::now();
        let stats = self.distiller.train_step(images)?;
        self.images += n;
        self.position.step += 1;
        self.position.batch += 1;
        let entry = LogEntry {
            step: self.position.step,
            epoch: self.position.epoch,
            loss: stats.loss,
            margins: stats.margins.clone(),
            per_level: stats.per_level,
            images_per_s: n as f64 / t0.elapsed().as_secs_f64(),
            wall_s: self.step_end.elapsed().as_secs_f64(),
        };
        self.step_end = Instant::now();
        let path = self.run.train_log();
        let line = serde_json::to_string(&entry)
            .map_err(|e| Error::Internal(format!("a log line of {}: {e}", path.display())))?;
        writeln!(self.log, "{line}").map_err(|e| Error::io(&path, e))?;
        self.last_loss = Some(stats.loss);
        self.pb.set_position(self.position.step);
        self.pb.set_message(format!(
            "epoch {}/{} loss {:.4} margins {:?} {:.1} img/s",
            self.position.epoch + 1,
            self.config.epochs,
            stats.loss,
            stats.margins.iter().map(|m| (m * 1e4).round() / 1e4).collect::<Vec<_>>(),
            self.images as f64 / self.started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// Writes the checkpoint of the current position.
    fn checkpoint(&mut self) -> Result<()> {
        let state = self.distiller.training_state();
        if state.step != self.position.step {
            return Err(Error::Internal(format!(
                "the optimiser took {} steps, the trainer counted {}",
                state.step, self.position.step
            )));
        }
        Checkpoint { state, position: self.position }.save(&self.run.checkpoint())?;
        self.saved_at = Some(self.position);
        self.fresh = None;
        Ok(())
    }

    /// The student when every epoch ran; otherwise a checkpoint of where training stopped (and
    /// no student: the run is not trained).
    fn finish(mut self, stopped: bool, loading_seconds: f64) -> Result<TrainSummary> {
        let path = self.run.train_log();
        self.log.flush().map_err(|e| Error::io(&path, e))?;
        let finished = self.position.epoch >= self.config.epochs;
        if finished {
            ikd_hrnet::save_safetensors(self.distiller.student_vars(), self.run.student())?;
        } else if self.saved_at != Some(self.position) {
            self.checkpoint()?;
        }
        self.pb.finish_and_clear();
        let seconds = self.started.elapsed().as_secs_f64();
        Ok(TrainSummary {
            steps: self.position.step,
            epochs_done: self.position.epoch,
            finished,
            interrupted: stopped && !finished,
            seconds,
            images_per_s: if seconds > 0.0 { self.images as f64 / seconds } else { 0.0 },
            loading_seconds,
            last_loss: self.last_loss,
        })
    }
}

/// Removes what a fresh start wrote, and the folder if it made it.
fn discard_start(run: &RunDir, made_dir: bool) {
    let _ = run.clear_start();
    if made_dir {
        let _ = std::fs::remove_dir_all(run.path());
    }
}

fn check_writable(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let probe = dir.join(format!(".ikd-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| Error::io(dir, e))?;
    std::fs::remove_file(&probe).map_err(|e| Error::io(&probe, e))
}
