//! `cargo xtask reproduce`: the paper's MVTec AD table with one command — dataset, teacher
//! weights, training and testing of every category (finished runs are skipped, interrupted ones
//! resumed), then the report. `--dataset visa|btad|mvtec_loco|mvtec_ad2|kolektor` runs the same
//! recipe on another benchmark (the paper's table is shown for MVTec AD only).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ikd::{TeacherWeights, TrainConfig};
use ikd_cli::TrainSettings;

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
    /// Folder of the runs (one folder per category; default: `runs/<dataset>`).
    #[arg(long)]
    pub runs: Option<PathBuf>,
    /// Write the report here (default: `reports/<name of the runs folder>`).
    #[arg(long)]
    pub report_out: Option<PathBuf>,
    /// The paper's table (used for MVTec AD only).
    #[arg(long, default_value_os_t = crate::report::default_paper())]
    pub paper: PathBuf,
    /// Score test sets where only some defective images have a mask.
    #[arg(long)]
    pub allow_missing_masks: bool,
}

impl ReproduceArgs {
    /// The canonical name of `--dataset` (`mvtec`, `visa`, …).
    fn dataset_id(&self) -> String {
        let n = self.download.dataset.to_ascii_lowercase();
        ikd_data::download::DATASETS
            .iter()
            .find(|(id, aliases, _)| *id == n || aliases.contains(&n.as_str()))
            .map_or(n, |d| d.0.to_string())
    }
}

/// `cargo xtask reproduce`.
pub fn run(args: &ReproduceArgs) -> Result<()> {
    let manifest = args.download.manifest()?;
    let dataset = args.dataset_id();
    let runs = args
        .runs
        .clone()
        .unwrap_or_else(|| crate::util::workspace_root().join("runs").join(&dataset));
    let known: Vec<String> = manifest.categories.iter().map(|c| c.name.clone()).collect();
    let categories = if args.all {
        known.clone()
    } else {
        for c in &args.category {
            if !known.contains(c) {
                bail!("unknown category `{c}`: {} has {}", manifest.name, known.join(", "));
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
            run_dir: runs.join(c),
        })
        .collect();
    run_jobs(jobs, &devices, !args.download.no_progress, args.allow_missing_masks)?;
    let out = match &args.report_out {
        Some(o) => o.clone(),
        None => {
            let name = runs
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| dataset.clone());
            crate::util::workspace_root().join("reports").join(name)
        }
    };
    // the paper reports MVTec AD only
    let paper = (dataset == "mvtec").then_some(args.paper.as_path());
    crate::report::write(&runs, &out, paper, 3)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ReproduceArgs,
    }

    fn parse(extra: &[&str]) -> ReproduceArgs {
        let mut v = vec!["reproduce", "--all"];
        v.extend_from_slice(extra);
        Cli::parse_from(v).args
    }

    #[test]
    fn datasets_are_named_and_find_their_manifest() {
        let a = parse(&[]);
        assert_eq!(a.dataset_id(), "mvtec");
        assert!(a.download.manifest_path().unwrap().ends_with("datasets/mvtec_ad.json"));
        let a = parse(&["--dataset", "KolektorSDD"]);
        assert_eq!(a.dataset_id(), "kolektor");
        let m = a.download.manifest().unwrap();
        assert_eq!(m.file_name, "KolektorSDD.zip");
        let a = parse(&["--dataset", "loco"]);
        assert_eq!(a.dataset_id(), "mvtec_loco");
        let e = parse(&["--dataset", "mpdd"]).download.manifest().unwrap_err().to_string();
        assert!(e.contains("unknown dataset `mpdd`") && e.contains("--normal-dir"), "{e}");
    }
}
