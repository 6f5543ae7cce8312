//! [`TrainSettings`]: the training recipe as command-line flags over a TOML file over the paper.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use anyhow::Result;
use ikd::{TeacherWeights, TrainConfig};

/// `what [default: value]` with the value from [`TrainConfig::default`].
fn with_default(what: &str, value: impl Display) -> String {
    format!("{what} [default: {value}]")
}

/// A list as the command line takes it: `1,2`.
fn list<T: Display>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

/// The training recipe of `ikd train` (and of `cargo xtask`'s training tasks): every setting of
/// [`TrainConfig`] but the data (the data root and the category, which each command takes its
/// own way).
///
/// Each flag overrides the same setting of `--config FILE`, which overrides the paper's recipe
/// ([`TrainConfig::default`]).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TrainSettings {
    /// Read the settings from this TOML file (a run's config.toml is one; JSON for a .json
    /// file); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// timm's HRNet name, or a timm cfg as a JSON file.
    #[arg(long, value_name = "NAME|FILE", help = with_default(
        "hrnet_w18_small | hrnet_w18_small_v2 | hrnet_w18 | hrnet_w32 | hrnet_w48, or a timm cfg JSON file",
        TrainConfig::default().backbone))]
    pub backbone: Option<String>,
    /// Where the teacher's weights come from.
    #[arg(long, value_name = "hub|random|FILE", help = with_default(
        "The teacher's weights: hub (timm's ImageNet weights via the Hugging Face hub), random, or a timm safetensors file",
        TrainConfig::default().teacher_weights))]
    pub teacher_weights: Option<TeacherWeights>,
    /// Start the student from these weights (timm layout) instead of a seeded initialisation.
    #[arg(long, value_name = "FILE")]
    pub student_init: Option<PathBuf>,
    /// Side of the square crop fed to the networks.
    #[arg(long, value_name = "PX", help = with_default(
        "Side of the centre crop fed to the networks (a multiple of 32)",
        TrainConfig::default().image_size))]
    pub image_size: Option<u32>,
    /// Side the images are resized to before the crop.
    #[arg(long, value_name = "PX", help = with_default(
        "Side the images are resized to before cropping (with --image-size alone: that size)",
        TrainConfig::default().load_size))]
    pub load_size: Option<u32>,
    /// Passes over the training images.
    #[arg(long, value_name = "N", help = with_default(
        "Passes over the training images", TrainConfig::default().epochs))]
    pub epochs: Option<u64>,
    /// Images per optimiser step.
    #[arg(long, value_name = "N", help = with_default(
        "Images per optimiser step", TrainConfig::default().batch_size))]
    pub batch_size: Option<usize>,
    /// AdamW's learning rate.
    #[arg(long, help = with_default(
        "AdamW's learning rate", TrainConfig::default().lr))]
    pub lr: Option<f64>,
    /// Seed of the student's initialisation and the shuffling.
    #[arg(long, help = with_default(
        "Seed of the student's initialisation and the shuffling", TrainConfig::default().seed))]
    pub seed: Option<u64>,
    /// Feature levels of the loss.
    #[arg(long, value_delimiter = ',', value_name = "L,L", help = with_default(
        "Feature levels of the loss (0..3), comma-separated",
        list(&TrainConfig::default().loss.levels)))]
    pub levels: Option<Vec<usize>>,
    /// Weight of each level.
    #[arg(long, value_delimiter = ',', value_name = "W,W", help = with_default(
        "Weight of each level, comma-separated",
        list(&TrainConfig::default().loss.weights)))]
    pub level_weights: Option<Vec<f64>>,
    /// AHSM margin momentum.
    #[arg(long, help = with_default(
        "AHSM margin momentum", TrainConfig::default().loss.alpha))]
    pub alpha: Option<f64>,
    /// AHSM margin: mean + β·std.
    #[arg(long, help = with_default(
        "AHSM margin: mean + beta * std", TrainConfig::default().loss.beta))]
    pub beta: Option<f64>,
    /// Weight of the context-similarity loss.
    #[arg(long, help = with_default(
        "Weight of the context-similarity loss (0 switches it off)",
        TrainConfig::default().loss.gamma))]
    pub gamma: Option<f64>,
    /// Keep every pixel (no hard-sample mining).
    #[arg(long)]
    pub no_mining: bool,
    /// Visit the training images in sorted file order instead of shuffling them.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Stop after this many optimiser steps in all.
    #[arg(long, value_name = "N")]
    pub max_steps: Option<u64>,
    /// `cpu` or `cuda:N`.
    #[arg(long, value_name = "cpu|cuda:N", help = with_default(
        "The device", TrainConfig::default().device))]
    pub device: Option<String>,
}

impl TrainSettings {
    /// The settings without flags: the `--config` file's, or the paper's.
    pub fn base(&self) -> Result<TrainConfig> {
        match &self.config {
            Some(path) => Ok(TrainConfig::load(path)?),
            None => Ok(TrainConfig::default()),
        }
    }

    /// Sets in `config` every setting given as a flag.
    pub fn apply(&self, config: &mut TrainConfig) {
        fn set<T: Clone>(to: &mut T, from: &Option<T>) {
            if let Some(v) = from {
                *to = v.clone();
            }
        }
        set(&mut config.backbone, &self.backbone);
        set(&mut config.teacher_weights, &self.teacher_weights);
        if self.student_init.is_some() {
            config.student_init = self.student_init.clone();
        }
        if let Some(side) = self.image_size {
            // no resizing before the crop unless --load-size says otherwise
            config.image_size = side;
            config.load_size = side;
        }
        set(&mut config.load_size, &self.load_size);
        set(&mut config.epochs, &self.epochs);
        set(&mut config.batch_size, &self.batch_size);
        set(&mut config.lr, &self.lr);
        set(&mut config.seed, &self.seed);
        set(&mut config.loss.levels, &self.levels);
        set(&mut config.loss.weights, &self.level_weights);
        set(&mut config.loss.alpha, &self.alpha);
        set(&mut config.loss.beta, &self.beta);
        if let Some(g) = self.gamma {
            config.loss.gamma = g;
            config.loss.context = g != 0.0;
        }
        if self.no_mining {
            config.loss.mining = false;
        }
        if self.no_shuffle {
            config.shuffle = false;
        }
        if self.max_steps.is_some() {
            config.max_steps = self.max_steps;
        }
        set(&mut config.device, &self.device);
    }

    /// The settings of a new run: [`base`](Self::base) with the flags
    /// [applied](Self::apply), checked.
    pub fn resolve(&self) -> Result<TrainConfig> {
        let mut config = self.base()?;
        self.apply(&mut config);
        config.validate()?;
        Ok(config)
    }

    /// The settings asked for the run that already is in `run_dir`: its saved ones (but for
    /// their `max_steps`: a step limit holds for the command it is given to) or the `--config`
    /// file's, with the flags and the data ([`DataSelection`](crate::DataSelection)) where
    /// given applied. The engine holds them against the saved ones
    /// ([`ikd::RunDir::settings_for`]): only the device and `--max-steps` may differ.
    pub fn resolve_resume(
        &self,
        run_dir: &Path,
        data: &crate::DataSelection,
    ) -> Result<TrainConfig> {
        let mut given = match &self.config {
            Some(_) => self.base()?,
            None => TrainConfig { max_steps: None, ..ikd::RunDir::new(run_dir).load_config()? },
        };
        self.apply(&mut given);
        data.apply(&mut given);
        Ok(given)
    }

    /// The settings asked for the run in `run_dir`, whatever its state: a new run's
    /// ([`resolve`](Self::resolve) with the data applied and checked) when the folder holds
    /// none, else [`resolve_resume`](Self::resolve_resume)'s.
    pub fn resolve_for(&self, run_dir: &Path, data: &crate::DataSelection) -> Result<TrainConfig> {
        if ikd::RunDir::new(run_dir).state() != ikd::RunState::Empty {
            return self.resolve_resume(run_dir, data);
        }
        let mut config = self.resolve()?;
        data.apply(&mut config);
        crate::DataSelection::check(&config)?;
        Ok(config)
    }
}

/// The `ikd` flag of a [`TrainConfig`] setting (`batch_size` → `--batch-size`, `loss.weights`
/// → `--level-weights`), for errors that name a setting.
///
/// ```
/// assert_eq!(ikd_cli::flag_of("batch_size"), "--batch-size");
/// assert_eq!(ikd_cli::flag_of("loss.weights"), "--level-weights");
/// assert_eq!(ikd_cli::flag_of("loss.beta"), "--beta");
/// ```
pub fn flag_of(setting: &str) -> String {
    match setting {
        "loss.weights" => "--level-weights".into(),
        "loss.mining" => "--no-mining".into(),
        "shuffle" => "--no-shuffle".into(),
        s => format!("--{}", s.strip_prefix("loss.").unwrap_or(s).replace('_', "-")),
    }
}

/// An engine error naming a setting, said with its flag: `--batch-size 0: must be at least 1`
/// (the other settings with an underscore that the message names become flags too); `None`
/// for other errors.
///
/// ```
/// let e = ikd::Error::setting("load_size", 32, "must be at least image_size (64)");
/// assert_eq!(ikd_cli::setting_as_flags(&e).unwrap(), "--load-size 32: must be at least --image-size (64)");
/// ```
pub fn setting_as_flags(e: &ikd::Error) -> Option<String> {
    let ikd::Error::Setting { setting, value, problem } = e else { return None };
    // the names with an underscore: no word of plain prose
    const NAMES: [&str; 7] = [
        "image_size",
        "load_size",
        "batch_size",
        "max_steps",
        "teacher_weights",
        "student_init",
        "data_root",
    ];
    let mut problem = problem.clone();
    for name in NAMES.iter().filter(|n| **n != setting) {
        problem = problem.replace(name, &flag_of(name));
    }
    Some(format!("{} {value}: {problem}", flag_of(setting)))
}
