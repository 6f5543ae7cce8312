//! `cargo xtask reproduce`: the paper's MVTec AD table with one command — dataset, teacher
//! weights, training and testing of every category (finished runs are skipped, interrupted ones
//! resumed), then the report.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ikd::{TeacherWeights, TrainConfig};
use ikd_data::download::Manifest;

use crate::download::DownloadArgs;
use crate::pipeline::{parse_devices, resolve_device, run_jobs, Job};

/// Arguments of `cargo xtask reproduce`. The training settings default to the paper's.
#[derive(Debug, Clone, clap::Args)]
pub struct ReproduceArgs {
    /// Every category of the manifest.
    #[arg(long, conflicts_with = "category", required_unless_present = "category")]
    pub all: bool,
    /// These categories only.
    #[arg(long, num_args = 1..)]
    pub category: Vec<String>,
    /// The dataset.
    #[command(flatten)]
    pub download: DownloadArgs,
    /// timm HRNet name of teacher and student.
    #[arg(long, default_value = "hrnet_w32")]
    pub backbone: String,
    /// The teacher's weights: `hub` (timm's ImageNet weights via the Hugging Face cache), a
    /// timm-layout safetensors file, or `random`.
    #[arg(long, default_value = "hub")]
    pub teacher_weights: TeacherWeights,
    /// Passes over the training images.
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    pub epochs: u64,
    /// Side of the square crop fed to the networks.
    #[arg(long, default_value_t = TrainConfig::default().image_size)]
    pub image_size: u32,
    /// Side the images are resized to before the crop (default: the image size).
    #[arg(long)]
    pub load_size: Option<u32>,
    /// Images per optimiser step.
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    pub batch_size: usize,
    /// AdamW's learning rate.
    #[arg(long, default_value_t = TrainConfig::default().lr)]
    pub lr: f64,
    /// Seed of the student's initialisation and the shuffling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// `auto` (the first CUDA GPU when built with `--features cuda` and one is present, else the
    /// CPU), `cpu` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Run categories concurrently, one per device: GPU indices (`0,1`), or `cpu`/`cuda:N` entries.
    #[arg(long)]
    pub devices: Option<String>,
    /// Folder of the runs (one folder per category).
    #[arg(long, default_value_os_t = crate::util::workspace_root().join("runs").join("mvtec"))]
    pub runs: PathBuf,
    /// Write the report here (default: `reports/<name of the runs folder>`).
    #[arg(long)]
    pub report_out: Option<PathBuf>,
    /// The paper's table.
    #[arg(long, default_value_os_t = crate::report::default_paper())]
    pub paper: PathBuf,
}

/// `cargo xtask reproduce`.
pub fn run(args: &ReproduceArgs) -> Result<()> {
    let manifest = Manifest::load(&args.download.manifest)?;
    let known: Vec<String> = manifest.categories.iter().map(|c| c.name.clone()).collect();
    let categories = if args.all {
        known.clone()
    } else {
        for c in &args.category {
            if !known.contains(c) {
                bail!(
                    "unknown category `{c}`: {} has {}",
                    args.download.manifest.display(),
                    known.join(", ")
                );
            }
        }
        args.category.clone()
    };
    let data_root = args.download.ensure()?;
    if args.teacher_weights == TeacherWeights::Hub {
        let path = ikd_hrnet::fetch_timm_weights(&args.backbone)
            .with_context(|| format!("fetching the teacher's weights ({})", args.backbone))?;
        tracing::info!("teacher weights: {}", path.display());
    }
    let devices = match &args.devices {
        Some(spec) => parse_devices(spec)?,
        None => vec![resolve_device(&args.device)],
    };
    let base = TrainConfig {
        data_root: std::path::absolute(&data_root).unwrap_or(data_root),
        backbone: args.backbone.clone(),
        teacher_weights: args.teacher_weights.clone(),
        image_size: args.image_size,
        load_size: args.load_size.unwrap_or(args.image_size),
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
        ..TrainConfig::default()
    };
    base.validate()?;
    let jobs = categories
        .iter()
        .map(|c| Job {
            config: TrainConfig { category: c.clone(), ..base.clone() },
            run_dir: args.runs.join(c),
        })
        .collect();
    run_jobs(jobs, &devices, !args.download.no_progress)?;
    let out = match &args.report_out {
        Some(o) => o.clone(),
        None => {
            let name = args
                .runs
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "mvtec".into());
            crate::util::workspace_root().join("reports").join(name)
        }
    };
    crate::report::write(&args.runs, &out, &args.paper, 3)
}
