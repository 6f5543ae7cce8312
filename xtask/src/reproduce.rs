//! `cargo xtask reproduce`: the paper's MVTec AD table with one command — dataset, teacher
//! weights, training and testing of every category (finished runs are skipped, interrupted ones
//! resumed), then the report. `--dataset visa|btad|mvtec_loco|mvtec_ad2|kolektor` runs the same
//! recipe on another benchmark (the paper's table is shown for MVTec AD only). With `--slurm DIR`,
//! the training and testing go to a SLURM cluster instead: the dataset and weights are fetched
//! here, and DIR gets a job array (one task per category) and a report job that waits for it
//! ([`ikd_cli::slurm`]).

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
    /// Do not train here: write a SLURM job array for the categories into this folder (on the
    /// cluster's shared file system, as are the runs and the dataset), to submit with
    /// `DIR/submit.sh`.
    #[arg(long, value_name = "DIR")]
    pub slurm: Option<PathBuf>,
    /// With --slurm: the `ikd` binary the jobs run (default: a release build of ikd-cli, with
    /// CUDA when this xtask has it, copied to DIR/bin/ikd).
    #[arg(long, value_name = "FILE", requires = "slurm")]
    pub ikd: Option<PathBuf>,
    /// With --slurm: what each job asks SLURM for.
    #[command(flatten)]
    pub sbatch: ikd_cli::slurm::SbatchOptions,
}

impl ReproduceArgs {
    /// The canonical name of `--dataset` (`mvtec`, `visa`, …).
    fn dataset_id(&self) -> String {
        let n = self.download.dataset.to_ascii_lowercase();
        ikd_datasets::DATASETS
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
    let report_out = match &args.report_out {
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
    let paper = (dataset == "mvtec").then(|| args.paper.clone());
    if let Some(dir) = &args.slurm {
        base.data_root = PathBuf::new();
        if args.settings.device.as_deref().unwrap_or("auto") == "auto" {
            // the nodes' devices are not known here: a GPU when the jobs ask for one
            let gpu = args.sbatch.gres.as_deref().is_some_and(|g| g.contains("gpu"));
            base.device = if gpu { "cuda:0" } else { "cpu" }.into();
        }
        let ikd = match &args.ikd {
            Some(p) => p.clone(),
            None => release_ikd(dir)?,
        };
        let plan = ikd_cli::slurm::Plan {
            ikd,
            data_root: std::path::absolute(&data_root).unwrap_or(data_root),
            categories,
            runs: runs.clone(),
            report: report_out,
            paper,
            config: base,
            allow_missing_masks: args.allow_missing_masks,
            sbatch: args.sbatch.clone(),
        };
        let w = ikd_cli::slurm::write(&plan, dir)?;
        println!(
            "{} categories: submit with `bash {}` (again after a failure: finished ones are skipped)",
            plan.categories.len(),
            w.submit.display()
        );
        return Ok(());
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
    crate::report::write(&runs, &report_out, paper.as_deref(), 3)
}

/// Builds `ikd` in release mode (with CUDA when this xtask was built with it) and copies it to
/// `dir/bin/ikd`, so the jobs run a binary that a later build here does not replace.
fn release_ikd(dir: &std::path::Path) -> Result<PathBuf> {
    let mut cargo = crate::test::cargo(&crate::util::workspace_root());
    cargo.args([
        "build",
        "--release",
        "--locked",
        "-p",
        "ikd-cli",
        "--message-format=json-render-diagnostics",
    ]);
    if cfg!(feature = "cuda") {
        cargo.args(["--features", "cuda"]);
    }
    let out = cargo
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo build --release -p ikd-cli")?;
    if !out.status.success() {
        bail!("building ikd in release mode failed (see above)");
    }
    let built = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "ikd")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo built no ikd executable")?;
    let dest = dir.join("bin").join("ikd");
    ikd_io::atomic_copy(&built, &dest)?;
    Ok(dest)
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
