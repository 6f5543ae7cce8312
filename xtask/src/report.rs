//! `cargo xtask report RUNS_DIR`: the report of the finished runs in a folder, written by
//! `ikd_report` with the workspace's defaults (`reports/<name of RUNS_DIR>`, the paper's table in
//! `datasets/ikd_paper_mvtec.csv`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ikd_report::{PaperTable, ReportOptions};

use crate::util::workspace_root;

/// The paper's table shipped with the workspace.
pub fn default_paper() -> PathBuf {
    workspace_root().join("datasets").join("ikd_paper_mvtec.csv")
}

/// Arguments of `cargo xtask report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Folder of run folders (one per category), or one run folder; unfinished runs (without
    /// `student.safetensors` or `metrics.json`) are left out.
    pub runs_dir: PathBuf,
    /// Write the report here (default: `reports/<name of RUNS_DIR>` in the workspace).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The paper's table.
    #[arg(long, default_value_os_t = default_paper())]
    pub paper: PathBuf,
    /// Images per category in each half of the gallery (worst, best).
    #[arg(long, default_value_t = 3)]
    pub gallery: usize,
}

/// `cargo xtask report`: returns the report folder.
pub fn run(args: &ReportArgs) -> Result<PathBuf> {
    let out = match &args.out {
        Some(o) => o.clone(),
        None => {
            let name = args.runs_dir.file_name().with_context(|| {
                format!("{} has no folder name to name the report after", args.runs_dir.display())
            })?;
            workspace_root().join("reports").join(name)
        }
    };
    write(&args.runs_dir, &out, Some(&args.paper), args.gallery)?;
    Ok(out)
}

/// Writes the report of the finished runs in `runs_dir` into `out`, with the paper's values from
/// `paper` when given (MVTec AD only: the paper reports no other dataset), and says where it is.
pub fn write(runs_dir: &Path, out: &Path, paper: Option<&Path>, gallery: usize) -> Result<()> {
    let runs = ikd_report::find_runs(&[runs_dir])?;
    let paper = paper.map(PaperTable::load).transpose()?;
    let options = ReportOptions { paper, gallery };
    ikd_report::write_report(&runs, out, &options)?;
    println!("report: {}", out.join("report.html").display());
    Ok(())
}
