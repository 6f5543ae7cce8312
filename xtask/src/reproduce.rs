//! `cargo xtask reproduce`: the paper's MVTec AD table with one command — dataset, teacher
//! weights, training and testing of every category (finished runs are skipped, interrupted ones
//! resumed), then the report.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ikd::{TeacherWeights, TrainConfig};
use ikd_cli::TrainSettings;
use ikd_data::download::Manifest;

use crate::download::DownloadArgs;
use crate::pipeline::{parse_devices, resolve_device, run_jobs, Job};

/// Arguments of `cargo xtask reproduce`. The training settings default to the paper's
/// ([`TrainSettings`], as in `ikd train`).
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
    /// The training recipe (default: the paper's). `--device` also takes `auto`: the first
    /// CUDA GPU when built with `--features cuda` and one is present, else the CPU (the default).
    #[command(flatten)]
    pub settings: TrainSettings,
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
    let mut base = args.settings.resolve()?;
    let data_root = args.download.ensure()?;
    if base.teacher_weights == TeacherWeights::Hub {
        let path = ikd_hrnet::fetch_timm_weights(&base.backbone)
            .with_context(|| format!("fetching the teacher's weights ({})", base.backbone))?;
        tracing::info!("teacher weights: {}", path.display());
    }
    let devices = match &args.devices {
        Some(spec) => parse_devices(spec)?,
        None => vec![resolve_device(args.settings.device.as_deref().unwrap_or("auto"))],
    };
    base.data_root = std::path::absolute(&data_root).unwrap_or(data_root);
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
