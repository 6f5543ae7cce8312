//! SLURM job arrays for many categories: one array task per category trains and tests it in a
//! shared runs folder, a report job waits for the array (`--dependency=afterok`), and
//! `submit.sh` submits only the categories whose run is not finished, so a resubmission after a
//! failure reruns the unfinished ones and nothing else (the run folder's [`ikd::RunState`]
//! decides, through `ikd status`).
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let plan = ikd_cli::slurm::Plan {
//!     ikd: "/opt/ikd/bin/ikd".into(),
//!     data_root: "/shared/mvtec".into(),
//!     categories: vec!["bottle".into(), "cable".into()],
//!     runs: "/shared/runs".into(),
//!     report: "/shared/report".into(),
//!     paper: None,
//!     config: ikd::TrainConfig::default(),
//!     allow_missing_masks: false,
//!     sbatch: ikd_cli::slurm::SbatchOptions::default(),
//! };
//! let written = ikd_cli::slurm::write(&plan, dir.path())?;
//! let array = std::fs::read_to_string(&written.train)?;
//! assert!(array.contains("CATEGORIES=(bottle cable)"));
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ikd::TrainConfig;

/// What every job of the plan asks SLURM for (`#SBATCH` lines).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SbatchOptions {
    /// Partition of every job (`--partition`).
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit of each category's job (`--time`, e.g. `4:00:00`).
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
    /// Generic resources of each category's job (`--gres`, e.g. `gpu:1`; pair it with
    /// `--device cuda:0`).
    #[arg(long)]
    pub gres: Option<String>,
    /// CPUs of each category's job (`--cpus-per-task`).
    #[arg(long, value_name = "N")]
    pub cpus_per_task: Option<u32>,
    /// Memory of each category's job (`--mem`, e.g. `16G`).
    #[arg(long)]
    pub mem: Option<String>,
    /// Run at most this many categories at once (`--array=…%N`).
    #[arg(long, value_name = "N")]
    pub max_parallel: Option<u32>,
    /// More `#SBATCH` options for every job, as sbatch takes them (repeatable: `--sbatch-arg
    /// --account=vision`).
    #[arg(long = "sbatch-arg", value_name = "OPTION", allow_hyphen_values = true)]
    pub extra: Vec<String>,
}

/// The cluster's work: where things are, what to train, what to ask SLURM for.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The `ikd` binary the jobs run (on the shared file system).
    pub ikd: PathBuf,
    /// The dataset (MVTec AD layout), on the shared file system.
    pub data_root: PathBuf,
    /// One array task per category, in this order.
    pub categories: Vec<String>,
    /// Folder of the run folders (`RUNS/<category>`).
    pub runs: PathBuf,
    /// The report folder the final job writes.
    pub report: PathBuf,
    /// The paper's table for the report (MVTec AD).
    pub paper: Option<PathBuf>,
    /// The training recipe (its data root and category are replaced per task).
    pub config: TrainConfig,
    /// Test sets where only some defective images have a mask are scored (`ikd test
    /// --allow-missing-masks`).
    pub allow_missing_masks: bool,
    /// What each job asks SLURM for.
    pub sbatch: SbatchOptions,
}

/// The files [`write`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The recipe every task trains with (`config.toml`).
    pub config: PathBuf,
    /// The job array (`train.sbatch`).
    pub train: PathBuf,
    /// The report job (`report.sbatch`).
    pub report: PathBuf,
    /// The script that submits both (`submit.sh`).
    pub submit: PathBuf,
    /// Where the jobs' logs go (`logs/`).
    pub logs: PathBuf,
}

/// `text` quoted for bash: as it is when it is safe, else in single quotes.
pub fn shell_quote(text: &str) -> String {
    let safe = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:,=@%".contains(c));
    if safe {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

fn quote_path(p: &Path) -> Result<String> {
    let s = p.to_str().with_context(|| format!("{}: not a UTF-8 path", p.display()))?;
    Ok(shell_quote(s))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("{}: cannot make it absolute", p.display()))
}

/// Writes the plan's scripts into `dir` (created when missing): `config.toml`, `train.sbatch`,
/// `report.sbatch`, `submit.sh` and a `logs/` folder. Paths in them are absolute, so the jobs run
/// from any working folder. Only these files are replaced; logs and runs are never touched.
pub fn write(plan: &Plan, dir: &Path) -> Result<Written> {
    if plan.categories.is_empty() {
        bail!("no category to train: pass at least one");
    }
    for c in &plan.categories {
        if c.is_empty() || c.contains('/') || shell_quote(c) != *c {
            bail!("category `{c}` cannot name a run folder in a job script (use letters, digits, _ or -)");
        }
    }
    let dir = absolute(dir)?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let config_path = dir.join("config.toml");
    let config =
        TrainConfig { data_root: PathBuf::new(), category: String::new(), ..plan.config.clone() };
    config.save(&config_path).with_context(|| format!("writing {}", config_path.display()))?;

    let ikd = quote_path(&absolute(&plan.ikd)?)?;
    let data = quote_path(&absolute(&plan.data_root)?)?;
    let runs = quote_path(&absolute(&plan.runs)?)?;
    let report = quote_path(&absolute(&plan.report)?)?;
    let cfg = quote_path(&config_path)?;
    let logs_q = quote_path(&logs)?;
    let categories = plan.categories.join(" ");
    let sb = &plan.sbatch;

    let mut common = String::new();
    if let Some(p) = &sb.partition {
        writeln!(common, "#SBATCH --partition={}", shell_quote(p))?;
    }
    for e in &sb.extra {
        writeln!(common, "#SBATCH {e}")?;
    }
    let mut task = String::new();
    for (flag, value) in [
        ("time", sb.time.clone()),
        ("gres", sb.gres.clone()),
        ("cpus-per-task", sb.cpus_per_task.map(|n| n.to_string())),
        ("mem", sb.mem.clone()),
    ] {
        if let Some(v) = value {
            writeln!(task, "#SBATCH --{flag}={}", shell_quote(&v))?;
        }
    }
    let last = plan.categories.len() - 1;
    let allow = if plan.allow_missing_masks { " --allow-missing-masks" } else { "" };
    let limit = sb.max_parallel.map(|n| format!("%{n}")).unwrap_or_default();
    let train = format!(
        r#"#!/bin/bash
# One array task per category: `ikd run` takes RUNS/<category> as far as it goes (starts it,
# continues it after any interruption, trains and tests it; a finished run is left as it is).
# Written by `ikd slurm`; submit with submit.sh.
#SBATCH --job-name=ikd-train
#SBATCH --array=0-{last}{limit}
#SBATCH --output={logs_q}/train-%A_%a.out
{common}{task}set -euo pipefail
IKD={ikd}
DATA={data}
RUNS={runs}
CONFIG={cfg}
CATEGORIES=({categories})
category=${{CATEGORIES[$SLURM_ARRAY_TASK_ID]}}
run="$RUNS/$category"
echo "$category: job $SLURM_JOB_ID on $(hostname)"
# what the run needs next (start, start again, resume, test, nothing) is ikd run's decision
"$IKD" --quiet run --config "$CONFIG" --data-root "$DATA" --category "$category" --out "$run"{allow}
state=$("$IKD" status "$run" | cut -f1)
if [ "$state" != tested ]; then
  echo "$category: the run stopped before its end ($state): submit again to continue it" >&2
  exit 1
fi
"#
    );

    let paper = match &plan.paper {
        Some(p) => format!(" --paper {}", quote_path(&absolute(p)?)?),
        None => String::new(),
    };
    let report_job = format!(
        r#"#!/bin/bash
# The report of every finished run in RUNS, after the array (submit.sh adds
# --dependency=afterok:<array>). Written by `ikd slurm`.
#SBATCH --job-name=ikd-report
#SBATCH --output={logs_q}/report-%j.out
{common}set -euo pipefail
{ikd} --quiet report {runs} --out {report}{paper}
"#
    );

    let train_path = dir.join("train.sbatch");
    let report_path = dir.join("report.sbatch");
    let submit = format!(
        r#"#!/bin/bash
# Submits the categories whose run is not finished as one job array, and the report job after
# it (--dependency=afterok). Run it again after a failure: finished categories are not rerun.
# Written by `ikd slurm`.
set -euo pipefail
IKD={ikd}
RUNS={runs}
CATEGORIES=({categories})
SBATCH="${{SBATCH:-sbatch}}"
todo=()
for i in "${{!CATEGORIES[@]}}"; do
  state=$("$IKD" status "$RUNS/${{CATEGORIES[$i]}}" | cut -f1)
  if [ "$state" != tested ]; then todo+=("$i"); fi
done
dependency=()
if [ "${{#todo[@]}}" -gt 0 ]; then
  ids=$(IFS=,; echo "${{todo[*]}}")
  array=$("$SBATCH" --parsable --array="$ids{limit}" {train_q})
  array=${{array%%;*}}
  echo "train: job array $array, ${{#todo[@]}} of ${{#CATEGORIES[@]}} categories (tasks $ids)"
  dependency=(--dependency=afterok:"$array")
else
  echo "train: every category is finished; only the report is submitted"
fi
report=$("$SBATCH" --parsable "${{dependency[@]}}" {report_q})
report=${{report%%;*}}
echo "report: job $report, writes {report}"
"#,
        train_q = quote_path(&train_path)?,
        report_q = quote_path(&report_path)?,
    );
    let submit_path = dir.join("submit.sh");
    for (path, text) in
        [(&train_path, &train), (&report_path, &report_job), (&submit_path, &submit)]
    {
        ikd_io::atomic_write(path, text.as_bytes())?;
        set_executable(path)?;
    }
    Ok(Written {
        config: config_path,
        train: train_path,
        report: report_path,
        submit: submit_path,
        logs,
    })
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(categories: &[&str]) -> Plan {
        Plan {
            ikd: "/opt/ikd".into(),
            data_root: "/data/my mvtec".into(),
            categories: categories.iter().map(|c| c.to_string()).collect(),
            runs: "/runs".into(),
            report: "/report".into(),
            paper: Some("/paper.csv".into()),
            config: TrainConfig { epochs: 3, ..TrainConfig::default() },
            allow_missing_masks: false,
            sbatch: SbatchOptions {
                partition: Some("gpu".into()),
                gres: Some("gpu:1".into()),
                max_parallel: Some(4),
                extra: vec!["--account=vision".into()],
                ..SbatchOptions::default()
            },
        }
    }

    #[test]
    fn quoting_keeps_safe_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("/a/b-c_d.e"), "/a/b-c_d.e");
        assert_eq!(shell_quote("my data"), "'my data'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn the_scripts_hold_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        let w = write(&plan(&["bottle", "cable", "zipper"]), dir.path()).unwrap();
        let train = std::fs::read_to_string(&w.train).unwrap();
        assert!(train.contains("#SBATCH --array=0-2%4\n"), "{train}");
        assert!(train.contains("#SBATCH --partition=gpu\n#SBATCH --account=vision\n"), "{train}");
        assert!(train.contains("#SBATCH --gres=gpu:1\n"), "{train}");
        assert!(train.contains("DATA='/data/my mvtec'\n"), "{train}");
        assert!(train.contains("CATEGORIES=(bottle cable zipper)\n"), "{train}");
        assert!(train.contains("--quiet run --config"), "{train}");
        // the lifecycle is ikd run's: the script names no file of a run and removes nothing
        assert!(!train.contains("rm ") && !train.contains(".safetensors"), "{train}");
        assert!(!train.contains(ikd::files::TRAIN_LOG), "{train}");
        let report = std::fs::read_to_string(&w.report).unwrap();
        assert!(report.contains("/opt/ikd --quiet report /runs --out /report --paper /paper.csv"));
        assert!(!report.contains("gres"), "the report job needs no GPU: {report}");
        let submit = std::fs::read_to_string(&w.submit).unwrap();
        assert!(submit.contains("--dependency=afterok:"), "{submit}");
        let saved = TrainConfig::load(&w.config).unwrap();
        assert_eq!((saved.epochs, saved.category.as_str()), (3, ""));
        assert!(w.logs.is_dir());
    }

    #[test]
    fn bad_plans_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = write(&plan(&[]), dir.path()).unwrap_err().to_string();
        assert!(err.contains("no category"), "{err}");
        let err = write(&plan(&["a b"]), dir.path()).unwrap_err().to_string();
        assert!(err.contains("category `a b`"), "{err}");
        assert!(!dir.path().join("train.sbatch").exists(), "nothing written");
    }
}
