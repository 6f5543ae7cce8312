//! Training and testing categories: skipping finished runs, resuming interrupted ones, one worker
//! per device.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use ikd::{RunDir, RunState, TestOptions, TrainConfig, TrainOptions};

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

/// The settings (besides the device and `max_steps`, which a resumed run may change) in which
/// the run in `run_dir` differs from `wanted` ([`TrainConfig::changes_from`]); empty when they
/// agree or there is no run yet.
pub fn changed_settings(run_dir: &Path, wanted: &TrainConfig) -> Result<Vec<String>> {
    let run = RunDir::new(run_dir);
    if run.state() == RunState::Empty {
        return Ok(Vec::new());
    }
    Ok(wanted.changes_from(&run.load_config()?))
}

/// Trains (resuming from a checkpoint when there is one) and tests one job on `device`. A run
/// folder that holds a run with other settings is an error (never overwritten or reused).
pub fn run_job(
    job: &Job,
    device: &str,
    progress: bool,
    allow_missing_masks: bool,
) -> Result<Outcome> {
    let dir = &job.run_dir;
    let name = &job.config.category;
    let changed = changed_settings(dir, &job.config)?;
    if !changed.is_empty() {
        anyhow::bail!(
            "{} holds a {name} run with other settings ({}): choose another runs folder or \
             remove that one",
            dir.display(),
            changed.join(", ")
        );
    }
    let run = RunDir::new(dir);
    let state = run.state();
    if state == RunState::Tested {
        tracing::info!("{name}: finished run found in {}, skipped", dir.display());
        return Ok(Outcome::Skipped);
    }
    let config = TrainConfig { device: device.to_string(), ..job.config.clone() };
    if state != RunState::Trained {
        let resume = state == RunState::Checkpointed;
        if resume {
            tracing::info!("{name}: resuming the interrupted run in {}", dir.display());
        } else if state == RunState::Started {
            // A run that stopped before its first checkpoint: start it again.
            run.clear_start().with_context(|| format!("cleaning {}", dir.display()))?;
        }
        tracing::info!("{name}: training on {device} into {}", dir.display());
        let opts = TrainOptions {
            resume,
            progress,
            stop: Some(ikd_cli::stop_on_signals()?),
            kernels: ikd::KernelPolicy::from_env(),
            ..Default::default()
        };
        let s = ikd::train(&config, dir, opts)
            .with_context(|| format!("training {name} in {}", dir.display()))?;
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
                "training {name} stopped before its end (max_steps?); no student to test in {}",
                dir.display()
            );
        }
    }
    let kernels = ikd::KernelPolicy::from_env();
    let device = Some(device.to_string());
    let opts =
        TestOptions { device, progress, kernels, allow_missing_masks, ..TestOptions::default() };
    let m = ikd::test_run(dir, &opts)
        .with_context(|| format!("testing {name} in {}", dir.display()))?;
    if m.pixel_level {
        tracing::info!("{name}: pixel AUROC {:.4}, AU-PRO {:.4}", m.pixel_auroc, m.au_pro);
    } else {
        tracing::info!("{name}: image AUROC {:.4} (no masks: image level only)", m.image_auroc);
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
        assert!(changed_settings(dir.path(), &config).unwrap().is_empty(), "no run yet");
        let stored = TrainConfig { device: "cuda:0".into(), ..config.clone() };
        // a run made before config.toml, with its config.json, is read too
        std::fs::write(
            dir.path().join(ikd::files::LEGACY_CONFIG),
            serde_json::to_string(&stored).unwrap(),
        )
        .unwrap();
        assert!(changed_settings(dir.path(), &config).unwrap().is_empty(), "device may differ");
        let more = TrainConfig { epochs: 12, ..config.clone() };
        assert_eq!(changed_settings(dir.path(), &more).unwrap(), vec!["epochs: 2 saved, 12 given"]);
        stored.save(&RunDir::new(dir.path()).config()).unwrap();
        let job = Job { config: more, run_dir: dir.path().to_path_buf() };
        let err = run_job(&job, "cpu", false, false).unwrap_err().to_string();
        assert!(err.contains("other settings (epochs: 2 saved, 12 given)"), "{err}");
    }

    #[test]
    fn an_empty_folder_is_not_finished() {
        let dir = tempfile::tempdir().unwrap();
        assert_ne!(RunDir::new(dir.path()).state(), RunState::Tested);
        std::fs::write(RunDir::new(dir.path()).student(), b"x").unwrap();
        assert_ne!(RunDir::new(dir.path()).state(), RunState::Tested);
        std::fs::write(RunDir::new(dir.path()).metrics(), b"{}").unwrap();
        assert_eq!(RunDir::new(dir.path()).state(), RunState::Tested);
    }
}
