//! Training a student: the run directory, checkpoints every epoch, resume, the training log.
//!
//! A run directory holds `config.toml` (every setting, resolved), `train_log.jsonl` (one JSON
//! object per optimiser step), `teacher.json` (where the teacher's weights came from and their
//! SHA-256) with `teacher.safetensors` (a hard link or copy of those weights, so that the run is
//! rebuilt without the network or the Hugging Face cache), `checkpoint.safetensors` (student,
//! optimiser moments, AHSM margins and position, written atomically after every epoch and when
//! training stops) and, once training is finished, `student.safetensors` (timm layout).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use ikd_data::{Loader, Order, Transform};
use ikd_distill::IkdLossConfig;

use crate::checkpoint::{Checkpoint, Position};
use crate::optim::AdamWParams;
use crate::{Backbone, Distiller, Error, Result, TeacherIdentity, TeacherWeights};

/// File names inside a run directory.
pub mod files {
    /// Every setting of the run, resolved (TOML: `ikd train --config` reads it).
    pub const CONFIG: &str = "config.toml";
    /// Where runs made before `config.toml` keep their settings (still read).
    pub const LEGACY_CONFIG: &str = "config.json";
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
}

/// Every setting of a training run. `Default` is the paper's recipe (hrnet_w32, ImageNet teacher
/// from the hub, 256², 50 epochs, batch 2, AdamW lr 5e-5, levels 1 and 2 weighted 1 and 2,
/// α 0.01, β 2, γ 1).
///
/// ```
/// let c = ikd::TrainConfig { data_root: "data".into(), category: "bottle".into(), ..Default::default() };
/// assert_eq!(c.epochs, 50);
/// assert_eq!(c.backbone, "hrnet_w32");
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Folder holding the categories in MVTec AD layout.
    pub data_root: PathBuf,
    /// The category (a folder of `data_root`).
    pub category: String,
    /// timm's HRNet name, or a timm cfg as a JSON file.
    pub backbone: String,
    /// Where the teacher's weights come from.
    pub teacher_weights: TeacherWeights,
    /// Start the student from these weights (timm layout) instead of a seeded initialisation.
    pub student_init: Option<PathBuf>,
    /// Side of the square crop fed to the networks.
    pub image_size: u32,
    /// Side the images are resized to before the crop.
    pub load_size: u32,
    /// Passes over the training images.
    pub epochs: u64,
    /// Images per optimiser step.
    pub batch_size: usize,
    /// AdamW's learning rate (the other settings are PyTorch's defaults).
    pub lr: f64,
    /// Seed of the student's initialisation and the shuffling.
    pub seed: u64,
    /// The loss.
    pub loss: IkdLossConfig,
    /// Shuffle the training images every epoch (otherwise: sorted file order).
    pub shuffle: bool,
    /// Stop after this many optimiser steps in all.
    pub max_steps: Option<u64>,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// Folder mode: the images come from these plain folders instead of
    /// `data_root/category` (which then only names the run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folder: Option<ikd_data::FolderSpec>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            data_root: PathBuf::new(),
            category: String::new(),
            backbone: "hrnet_w32".into(),
            teacher_weights: TeacherWeights::Hub,
            student_init: None,
            image_size: 256,
            load_size: 256,
            epochs: 50,
            batch_size: 2,
            lr: 5e-5,
            seed: 0,
            loss: IkdLossConfig::paper(),
            shuffle: true,
            max_steps: None,
            device: "cpu".into(),
            folder: None,
        }
    }
}

impl TrainConfig {
    /// Opens the run's category: `folder` when set, else `<data_root>/<category>` (or
    /// `<data_root_override>/<category>`) in MVTec AD layout, with this [`MaskPolicy`] for the
    /// test images' masks.
    ///
    /// [`MaskPolicy`]: ikd_data::MaskPolicy
    ///
    /// ```no_run
    /// let c = ikd::TrainConfig { data_root: "data/btad".into(), category: "01".into(), ..Default::default() };
    /// let cat = c.open_category(None, ikd_data::MaskPolicy::default())?;
    /// # Ok::<(), ikd::Error>(())
    /// ```
    pub fn open_category(
        &self,
        data_root_override: Option<&std::path::Path>,
        masks: ikd_data::MaskPolicy,
    ) -> Result<ikd_data::Category> {
        let mut cat = match &self.folder {
            Some(f) => f.open(masks)?,
            None => ikd_data::Category::open_with(
                data_root_override.unwrap_or(&self.data_root),
                &self.category,
                masks,
            )?,
        };
        if self.folder.is_some() && !self.category.is_empty() {
            cat.name = self.category.clone();
        }
        Ok(cat)
    }

    /// Checks the settings that do not need the disk.
    ///
    /// ```
    /// let c = ikd::TrainConfig { batch_size: 0, ..Default::default() };
    /// assert!(c.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::Config("--batch-size must be at least 1".into()));
        }
        if self.epochs == 0 {
            return Err(Error::Config("--epochs must be at least 1".into()));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::Config(format!("--lr must be a positive number, not {}", self.lr)));
        }
        if !self.image_size.is_multiple_of(32) || self.image_size == 0 {
            return Err(Error::Config(format!(
                "--image-size must be a positive multiple of 32 (HRNet downsamples by 32), not {}",
                self.image_size
            )));
        }
        if self.load_size < self.image_size {
            return Err(Error::Config(format!(
                "--load-size ({}) must be at least --image-size ({})",
                self.load_size, self.image_size
            )));
        }
        self.loss.validate()?;
        Ok(())
    }

    /// The backbone: a timm name or a JSON cfg file.
    ///
    /// ```
    /// let c = ikd::TrainConfig::default();
    /// assert_eq!(c.backbone().unwrap().name, "hrnet_w32");
    /// ```
    pub fn backbone(&self) -> Result<Backbone> {
        resolve_backbone(&self.backbone)
    }

    /// The image transform.
    ///
    /// ```
    /// assert_eq!(ikd::TrainConfig::default().transform().unwrap(), ikd_data::Transform::paper());
    /// ```
    pub fn transform(&self) -> Result<Transform> {
        Ok(Transform::new(self.load_size, self.image_size)?)
    }

    /// Reads settings from a TOML file (JSON for a `.json` file). Settings the file leaves out
    /// keep their [`Default`] (the paper's), but for `load_size`, which is `image_size` unless
    /// given; an unknown key is an error naming it.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("run.toml");
    /// std::fs::write(&path, "category = \"carpet\"\nepochs = 100\n[loss]\nbeta = 3.0\n")?;
    /// let c = ikd::TrainConfig::load(&path)?;
    /// assert_eq!((c.epochs, c.loss.beta, c.lr), (100, 3.0, 5e-5));
    /// std::fs::write(&path, "epoch = 100\n")?;
    /// assert!(ikd::TrainConfig::load(&path).unwrap_err().to_string().contains("unknown field `epoch`"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load(path: &Path) -> Result<Self> {
        const WHAT: &str = "an ikd training configuration";
        if path.extension().is_some_and(|e| e == "json") {
            return crate::fsutil::read_json(path, WHAT);
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let bad = |e: &dyn std::fmt::Display| Error::bad_file(path, format!("not {WHAT}: {e}"));
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            // one line: where, and what (toml's own message quotes the file over several)
            let at = e.span().map_or(0, |s| s.start.min(text.len()));
            let line = text.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            bad(&format!("line {line}: {}", e.message().trim()))
        })?;
        let has_load_size = table.contains_key("load_size");
        let mut config: Self = table.try_into().map_err(|e| bad(&e))?;
        if !has_load_size {
            // no resizing before the crop unless asked for, as with `--image-size` alone
            config.load_size = config.image_size;
        }
        Ok(config)
    }

    /// Writes the settings as TOML (JSON for a `.json` path), atomically.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("config.toml");
    /// let c = ikd::TrainConfig { category: "carpet".into(), ..Default::default() };
    /// c.save(&path)?;
    /// assert_eq!(ikd::TrainConfig::load(&path)?, c);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save(&self, path: &Path) -> Result<()> {
        if path.extension().is_some_and(|e| e == "json") {
            return crate::fsutil::write_json(path, self);
        }
        let text = toml::to_string(self).map_err(|e| Error::bad_file(path, e.to_string()))?;
        Ok(ikd_io::atomic_write(path, text.as_bytes())?)
    }

    /// The settings in which `self` differs from `saved`, as `name: <saved> saved, <self>
    /// given` (loss settings as `loss.<name>`), leaving out the device and `max_steps`, which
    /// a resumed run may change. Empty when they agree.
    ///
    /// ```
    /// let saved = ikd::TrainConfig::default();
    /// let given = ikd::TrainConfig { epochs: 100, ..saved.clone() };
    /// assert_eq!(given.changes_from(&saved), ["epochs: 50 saved, 100 given"]);
    /// ```
    pub fn changes_from(&self, saved: &TrainConfig) -> Vec<String> {
        fn flat(prefix: &str, v: serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        flat(&format!("{prefix}{k}."), v, out);
                    }
                }
                v => out.push((prefix.trim_end_matches('.').to_string(), v)),
            }
        }
        let (mut given, mut old) = (Vec::new(), Vec::new());
        flat("", serde_json::to_value(self).unwrap_or_default(), &mut given);
        flat("", serde_json::to_value(saved).unwrap_or_default(), &mut old);
        let old: std::collections::HashMap<_, _> = old.into_iter().collect();
        let show = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "none".to_string(),
            v => v.to_string(),
        };
        given
            .into_iter()
            .filter(|(k, _)| k != "device" && k != "max_steps")
            .filter(|(k, v)| old.get(k) != Some(v))
            .map(|(k, v)| {
                let before = old.get(&k).map_or("none".to_string(), show);
                format!("{k}: {before} saved, {} given", show(&v))
            })
            .collect()
    }

    /// Builds the teacher/student pair for this configuration on `device`.
    ///
    /// ```no_run
    /// let d = ikd::TrainConfig::default().distiller(&candle_core::Device::Cpu)?;
    /// # Ok::<(), ikd::Error>(())
    /// ```
    pub fn distiller(&self, device: &Device) -> Result<Distiller> {
        self.distiller_with(&self.teacher_weights, self.student_init.as_deref(), device)
    }

    /// The teacher/student pair of the run in `run_dir` (made with these settings), with the
    /// run's own teacher ([`TeacherIdentity::of_run`]); the student is left to be loaded from
    /// the run's checkpoint or `student.safetensors`.
    pub(crate) fn distiller_of_run(&self, run_dir: &Path, device: &Device) -> Result<Distiller> {
        let teacher = TeacherIdentity::of_run(run_dir)?.unwrap_or(self.teacher_weights.clone());
        self.distiller_with(&teacher, None, device)
    }

    fn distiller_with(
        &self,
        teacher: &TeacherWeights,
        student_init: Option<&Path>,
        device: &Device,
    ) -> Result<Distiller> {
        Distiller::new(
            &self.backbone()?,
            teacher,
            student_init,
            self.loss.clone(),
            AdamWParams { lr: self.lr, ..Default::default() },
            self.seed,
            device,
        )
    }
}

/// A timm HRNet name, or a path to a timm cfg as JSON (its file stem becomes the name).
///
/// ```
/// assert_eq!(ikd::resolve_backbone("hrnet_w18").unwrap().name, "hrnet_w18");
/// assert!(ikd::resolve_backbone("vit_b16").is_err());
/// ```
pub fn resolve_backbone(spec: &str) -> Result<Backbone> {
    if spec.ends_with(".json") {
        let path = Path::new(spec);
        let config = ikd_hrnet::HrNetConfig::from_json_file(path)?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Backbone { name, config })
    } else {
        Backbone::by_name(spec)
    }
}

/// Parses `cpu`, `cuda` or `cuda:N`.
///
/// ```
/// assert!(ikd::parse_device("cpu").unwrap().is_cpu());
/// assert!(ikd::parse_device("tpu").is_err());
/// ```
pub fn parse_device(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n.parse::<usize>().map_err(|_| {
                    Error::Config(format!("`{s}` is not a device: expected cuda:N with N a number"))
                })?,
                None => 0,
            };
            Device::new_cuda(ordinal).map_err(|e| {
                Error::Config(format!(
                    "device `{s}` is not available ({e}); build with `--features cuda` on a machine with an NVIDIA GPU, or use --device cpu"
                ))
            })
        }
        other => Err(Error::Config(format!("unknown device `{other}`: use cpu or cuda:N"))),
    }
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

impl TrainOptions {
    fn stop_requested(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// Removes what a fresh start wrote, and the folder if it made it.
fn discard_start(run: &crate::RunDir, made_dir: bool) {
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

/// Keeps the log lines of steps up to `step` (those after a checkpoint are run again on resume).
fn truncate_log(path: &Path, step: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
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
    Ok(ikd_io::atomic_write(path, kept.as_bytes())?)
}

/// Trains a student in `run_dir` (created if needed) with `config`.
///
/// A new run refuses a `run_dir` that already holds a run, unless `opts.resume`, which continues
/// from its checkpoint with the settings in its `config.json` (`config.max_steps` may differ) and
/// gives the same student as an uninterrupted run. A non-finite loss stops training with an error;
/// the last checkpoint is kept.
///
/// ```no_run
/// let config = ikd::TrainConfig { data_root: "data".into(), category: "bottle".into(), ..Default::default() };
/// let summary = ikd::train(&config, "runs/bottle".as_ref(), ikd::TrainOptions::default())?;
/// # Ok::<(), ikd::Error>(())
/// ```
pub fn train(config: &TrainConfig, run_dir: &Path, opts: TrainOptions) -> Result<TrainSummary> {
    config.validate()?;
    let run = crate::RunDir::new(run_dir);
    let config_path = run.config();
    let saved_config = run.saved_config();
    let ckpt_path = run.checkpoint();
    let log_path = run.train_log();
    let mut config = config.clone();
    if opts.resume {
        let saved = run.load_config()?;
        let max_steps = config.max_steps;
        let device = config.device.clone();
        config = TrainConfig { max_steps, device, ..saved };
    } else if saved_config.is_some() || ckpt_path.exists() {
        return Err(Error::Config(format!(
            "{} already holds a run: pass --resume to continue it, or choose another --out",
            run_dir.display()
        )));
    }
    let device = parse_device(&config.device)?;
    // the test images' masks do not matter for training
    let category = config.open_category(None, ikd_data::MaskPolicy::AllowMissing)?;
    let transform = config.transform()?;
    // Every image's header is read before anything is written, and a fresh run whose first epoch
    // meets an undecodable image is removed again: a start that fails on a bad image leaves no
    // run behind.
    let loading = Instant::now();
    let data = Loader::train(&category, &transform, opts.loader)?;
    let loading_seconds = loading.elapsed().as_secs_f64();
    let made_dir = !run_dir.exists();
    let mut position = Position { step: 0, epoch: 0, batch: 0 };
    let mut distiller;
    if opts.resume && ckpt_path.exists() {
        // the run's own teacher: a newer hub revision or a changed file would change the run
        distiller = config.distiller_of_run(run_dir, &device)?;
        let ck = Checkpoint::load(&ckpt_path, &device)?;
        distiller.restore_training_state(&ck.tensors, ck.position.step, ck.loss_state)?;
        position = ck.position;
        truncate_log(&log_path, position.step)?;
        tracing::info!(
            step = position.step,
            epoch = position.epoch,
            "resuming from {}",
            ckpt_path.display()
        );
    } else {
        let teacher = TeacherIdentity::resolve(
            &config.backbone()?.name,
            &config.teacher_weights,
            config.seed,
        )?;
        tracing::info!("teacher: {}", teacher.describe());
        distiller =
            config.distiller_with(&teacher.weights(), config.student_init.as_deref(), &device)?;
        let written = (|| {
            check_writable(run_dir)?;
            if !opts.resume {
                let _ = std::fs::remove_file(&log_path);
            }
            config.save(&config_path)?;
            teacher.keep_in(run_dir)?;
            teacher.save(&run.teacher())
        })();
        if let Err(e) = written {
            // a start that did not take leaves no run behind
            if !opts.resume {
                discard_start(&run, made_dir);
            }
            return Err(e);
        }
    }
    distiller.set_kernel_policy(opts.kernels);
    tracing::info!("kernels: {}", opts.kernels.path());
    let batches_per_epoch = data.len().div_ceil(config.batch_size) as u64;
    let total = batches_per_epoch * config.epochs;
    let limit = config.max_steps.map_or(total, |m| m.min(total));

    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io(&log_path, e))?;
    let pb = ikd_io::progress::bar(limit, "train", opts.progress);
    pb.set_position(position.step);
    let start = Instant::now();
    let mut step_end = start;
    let mut images = 0usize;
    let mut last_loss = None;
    let mut interrupted = false;
    let mut saved_at = None;
    let save = |d: &Distiller, pos: Position| -> Result<()> {
        let (tensors, step, loss_state) = d.training_state();
        debug_assert_eq!(step, pos.step);
        Checkpoint { tensors, position: pos, loss_state }.save(&ckpt_path)
    };
    'epochs: while position.epoch < config.epochs {
        let order = if config.shuffle {
            Order::Shuffled { seed: config.seed, epoch: position.epoch }
        } else {
            Order::Sequential
        };
        let batches = data.epoch(config.batch_size, order, position.batch as usize, &device)?;
        for batch in batches {
            if position.step >= limit {
                break 'epochs;
            }
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    if !opts.resume && saved_at.is_none() {
                        // nothing of the user's is in the run yet: the start did not take
                        drop(log);
                        discard_start(&run, made_dir);
                    }
                    return Err(e.into());
                }
            };
            let t0 = Instant::now();
            let stats = distiller.train_step(&batch.images)?;
            let n = batch.indices.len();
            images += n;
            position.step += 1;
            position.batch += 1;
            let entry = LogEntry {
                step: position.step,
                epoch: position.epoch,
                loss: stats.loss,
                margins: stats.margins.clone(),
                per_level: stats.per_level,
                images_per_s: n as f64 / t0.elapsed().as_secs_f64(),
                wall_s: step_end.elapsed().as_secs_f64(),
            };
            step_end = Instant::now();
            let line = serde_json::to_string(&entry)
                .map_err(|e| Error::bad_file(&log_path, e.to_string()))?;
            writeln!(log, "{line}").map_err(|e| Error::io(&log_path, e))?;
            last_loss = Some(stats.loss);
            if opts.stop_requested() {
                interrupted = true;
                break 'epochs;
            }
            pb.set_position(position.step);
            pb.set_message(format!(
                "epoch {}/{} loss {:.4} margins {:?} {:.1} img/s",
                position.epoch + 1,
                config.epochs,
                stats.loss,
                stats.margins.iter().map(|m| (m * 1e4).round() / 1e4).collect::<Vec<_>>(),
                images as f64 / start.elapsed().as_secs_f64()
            ));
        }
        position.epoch += 1;
        position.batch = 0;
        save(&distiller, position)?;
        saved_at = Some(position);
        if opts.stop_requested() {
            interrupted = position.epoch < config.epochs;
            break;
        }
    }
    log.flush().map_err(|e| Error::io(&log_path, e))?;
    let finished = position.epoch >= config.epochs;
    if !finished && saved_at != Some(position) {
        // (stopped at an epoch's end, the checkpoint of that position is already written)
        save(&distiller, position)?;
    } else {
        ikd_hrnet::save_safetensors(distiller.student_vars(), run.student())?;
    }
    pb.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    Ok(TrainSummary {
        steps: position.step,
        epochs_done: position.epoch,
        finished,
        interrupted,
        seconds,
        images_per_s: if seconds > 0.0 { images as f64 / seconds } else { 0.0 },
        loading_seconds,
        last_loss,
    })
}
