//! Training and testing categories: skipping finished runs, resuming interrupted ones, one worker
//! per device.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, Result};
use ikd::{NextStep, RunDir, TestOptions, TrainConfig, TrainOptions};

/// One category to train and test.
#[derive(Debug, Clone)]
pub struct Job {
    /// The training settings (`device` is replaced by the worker's device).
    pub config: TrainConfig,
    /// The run folder.
    pub run_dir: PathBuf,
}

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A finished run was found: nothing done.
    Skipped,
    /// Trained (or resumed) and tested.
    Done,
}

/// Takes one job's run as far as it goes on `device` ([`ikd::run`]: start, start again after a
/// start that never checkpointed, resume, test, or nothing for a finished run). A run folder that
/// holds a run with other settings is an error (never overwritten or reused).
pub fn run_job(
    job: &Job,
    device: &str,
    progress: bool,
    allow_missing_masks: bool,
) -> Result<Outcome> {
    let (dir, name) = (&job.run_dir, &job.config.category);
    let config = TrainConfig { device: device.to_string(), ..job.config.clone() };
    let kernels = ikd::KernelPolicy::from_env();
    let opts = ikd::RunOptions {
        train: TrainOptions {
            progress,
            stop: Some(ikd_cli::stop_on_signals()?),
            kernels,
            ..Default::default()
        },
        test: TestOptions { progress, kernels, allow_missing_masks, ..TestOptions::default() },
    };
    tracing::info!("{name}: {:?} in {} on {device}", RunDir::new(dir).next_step(), dir.display());
    let report =
        ikd::run(&config, dir, &opts).with_context(|| format!("{name} in {}", dir.display()))?;
    if report.found == NextStep::Nothing {
        tracing::info!("{name}: finished run found in {}, skipped", dir.display());
        return Ok(Outcome::Skipped);
    }
    if let Some(s) = &report.training {
        tracing::info!(
            "{name}: {} steps in {:.1} s ({:.2} images/s), last loss {:?}",
            s.steps,
            s.seconds,
            s.images_per_s,
            s.last_loss
        );
        if s.interrupted {
            anyhow::bail!(
                "interrupted: {name}'s checkpoint of step {} is in {}; the same command resumes it",
                s.steps,
                dir.display()
            );
        }
        if !s.finished {
            anyhow::bail!(
                "training {name} stopped at step {} before its end (max_steps); the same command \
                 continues it in {}",
                s.steps,
                dir.display()
            );
        }
    }
    if let Some(m) = &report.metrics {
        if m.pixel_level {
            tracing::info!("{name}: pixel AUROC {:.4}, AU-PRO {:.4}", m.pixel_auroc, m.au_pro);
        } else {
            tracing::info!("{name}: image AUROC {:.4} (no masks: image level only)", m.image_auroc);
        }
    }
    Ok(Outcome::Done)
}

/// Runs every job, one worker thread per device in `devices` (each takes the next job when it is
/// free). With one device, progress bars are shown when `progress`; with several, the log lines
/// only. All jobs are attempted; the first error is returned after the others finished.
pub fn run_jobs(
    jobs: Vec<Job>,
    devices: &[String],
    progress: bool,
    allow_missing_masks: bool,
) -> Result<Vec<(String, Outcome)>> {
    anyhow::ensure!(!devices.is_empty(), "no device to run on");
    let total = jobs.len();
    let queue = Mutex::new(jobs.into_iter().enumerate().collect::<VecDeque<_>>());
    let results: Mutex<Vec<(usize, String, Result<Outcome>)>> = Mutex::new(Vec::new());
    let bars = progress && devices.len() == 1;
    std::thread::scope(|s| {
        for device in devices {
            let (queue, results) = (&queue, &results);
            s.spawn(move || loop {
                let next = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None);
                let Some((i, job)) = next else { break };
                tracing::info!("[{}/{total}] {} on {device}", i + 1, job.config.category);
                let r = run_job(&job, device, bars, allow_missing_masks);
                if let Ok(mut v) = results.lock() {
                    v.push((i, job.config.category.clone(), r));
                }
            });
        }
    });
    let mut results = results.into_inner().map_err(|_| anyhow::anyhow!("a worker panicked"))?;
    results.sort_by_key(|r| r.0);
    let mut out = Vec::new();
    let mut first_err = None;
    for (_, name, r) in results {
        match r {
            Ok(o) => out.push((name, o)),
            Err(e) => {
                tracing::error!("{name}: {e:#}");
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Parses `--devices`: `0,1` → `cuda:0`, `cuda:1`; `cpu` and `cuda:N` entries are taken as they are.
pub fn parse_devices(spec: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let d = if part.chars().all(|c| c.is_ascii_digit()) {
            format!("cuda:{part}")
        } else if part == "cpu" || part.starts_with("cuda") {
            part.to_string()
        } else {
            anyhow::bail!("`{part}` in --devices is not a GPU index, cpu or cuda:N");
        };
        out.push(d);
    }
    anyhow::ensure!(!out.is_empty(), "--devices lists no device");
    Ok(out)
}

/// `auto`: the first CUDA GPU when this build has CUDA and one is present, otherwise the CPU.
pub fn resolve_device(spec: &str) -> String {
    if spec != "auto" {
        return spec.to_string();
    }
    match candle_core::Device::new_cuda(0) {
        Ok(_) => "cuda:0".into(),
        Err(_) => "cpu".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_parsed() {
        assert_eq!(parse_devices("0,1").unwrap(), vec!["cuda:0", "cuda:1"]);
        assert_eq!(parse_devices("cpu, cuda:2").unwrap(), vec!["cpu", "cuda:2"]);
        assert!(parse_devices("gpu0").is_err());
        assert!(parse_devices(",").is_err());
        assert_eq!(resolve_device("cpu"), "cpu");
    }

    #[test]
    fn a_run_with_other_settings_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = TrainConfig { category: "tile".into(), epochs: 2, ..TrainConfig::default() };
        let stored = TrainConfig { device: "cuda:0".into(), ..config.clone() };
        stored.save(&RunDir::new(dir.path()).config()).unwrap();
        let more = TrainConfig { epochs: 12, ..config.clone() };
        let job = Job { config: more, run_dir: dir.path().to_path_buf() };
        let err = format!("{:#}", run_job(&job, "cpu", false, false).unwrap_err());
        assert!(err.contains("other settings (epochs: 2 saved, 12 given)"), "{err}");
    }

    #[test]
    fn an_empty_folder_is_not_finished() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(RunDir::new(dir.path()).next_step(), NextStep::Start);
        std::fs::write(RunDir::new(dir.path()).student(), b"x").unwrap();
        assert_eq!(RunDir::new(dir.path()).next_step(), NextStep::Test);
        std::fs::write(RunDir::new(dir.path()).metrics(), b"{}").unwrap();
        assert_eq!(RunDir::new(dir.path()).next_step(), NextStep::Nothing);
    }
}
