//! `cargo xtask speed`: training throughput on a synthetic MVTec-sized category — a fixed number
//! of optimiser steps after a warm-up, reported as steps/s and images/s (used by `gpu-check.sh`).
//!
//! Two epochs over a category of `(warmup + steps) × batch` images, the first `warmup` steps of
//! each untimed. The first epoch decodes every image (on the loader's thread, beside the steps);
//! the second reads them from the loader's cache. Figures: the training steps alone (forward,
//! backward, update; second epoch, so nothing is decoded beside them); each epoch's training loop
//! with its data loading (the wall time between the ends of consecutive timed steps, which holds
//! any wait for a batch, plus a share of the header check before training); and the whole
//! `ikd::train` call (model set-up, warm-up and the final writes too).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use ikd::{LogEntry, TeacherWeights, TrainConfig, TrainOptions};
use ikd_data::synthetic::{generate, SyntheticConfig, Texture};

/// Arguments of `cargo xtask speed`.
#[derive(Debug, Clone, clap::Args)]
pub struct SpeedArgs {
    /// `cpu`, `cuda:N` or `auto`.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// timm HRNet name.
    #[arg(long, default_value = "hrnet_w32")]
    pub backbone: String,
    /// Side of the images and of the network input.
    #[arg(long, default_value_t = 256)]
    pub image_size: u32,
    /// Side of the synthetic image files (default: --image-size); e.g. 1024 for MVTec AD's
    /// sizes, resized to --image-size by the loader as the paper's transform does.
    #[arg(long)]
    pub source_size: Option<u32>,
    /// Images per step.
    #[arg(long, default_value_t = 2)]
    pub batch_size: usize,
    /// Steps not timed (first kernels, allocator).
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// Steps timed.
    #[arg(long, default_value_t = 20)]
    pub steps: u64,
    /// Scratch folder (default: a folder in the system's temporary directory, removed at the end).
    #[arg(long)]
    pub scratch: Option<PathBuf>,
}

/// `cargo xtask speed`: prints one line with steps/s and images/s of the timed steps.
pub fn run(args: &SpeedArgs) -> Result<()> {
    let device = crate::pipeline::resolve_device(&args.device);
    let owned = args.scratch.is_none();
    let scratch = args
        .scratch
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("ikd-speed-{}", std::process::id())));
    let result = measure(args, &device, &scratch);
    if owned {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    let m = result?;
    let steps = args.steps as f64;
    let images = steps * args.batch_size as f64;
    let kernels = if device == "cpu" {
        format!(", kernels {}", ikd::KernelPolicy::from_env().path())
    } else {
        String::new()
    };
    println!(
        "speed: {} {}² (from {}² files) batch {} on {device}{kernels} ({}), {} timed steps per epoch: training steps only {:.3} steps/s, {:.2} images/s; with data loading {:.3} steps/s, {:.2} images/s in the first epoch ({:.1}% of the steps only), {:.2} images/s in the second ({:.1}%); {:.2} images/s for the whole run with set-up and writes",
        args.backbone,
        args.image_size,
        args.source_size.unwrap_or(args.image_size),
        args.batch_size,
        ikd_kernels::cpu_model(),
        args.steps,
        steps / m.steps_s,
        images / m.steps_s,
        steps / m.first_s,
        images / m.first_s,
        100.0 * m.steps_s / m.first_s,
        images / m.second_s,
        100.0 * m.steps_s / m.second_s,
        2.0 * images / m.run_s,
    );
    Ok(())
}

/// Seconds the timed steps of one epoch took: the steps alone (second epoch, nothing decoded
/// beside them), each epoch's loop with its data loading, and the whole run's share.
struct Measured {
    steps_s: f64,
    first_s: f64,
    second_s: f64,
    run_s: f64,
}

fn measure(args: &SpeedArgs, device: &str, scratch: &std::path::Path) -> Result<Measured> {
    anyhow::ensure!(args.steps > 0, "--steps must be at least 1");
    let total = args.warmup + args.steps;
    let data = scratch.join("data");
    let n_train = (total as usize * args.batch_size).max(2);
    let cfg = SyntheticConfig {
        categories: vec![Texture::Carpet],
        image_size: args.source_size.unwrap_or(args.image_size),
        n_train,
        n_test_good: 0,
        n_test_defect: 0,
        seed: 0,
    };
    generate(&cfg, &data)?;
    let run_dir = scratch.join("run");
    let _ = std::fs::remove_dir_all(&run_dir);
    let config = TrainConfig {
        data_root: data,
        category: "carpet".into(),
        backbone: args.backbone.clone(),
        teacher_weights: TeacherWeights::Random,
        image_size: args.image_size,
        load_size: args.image_size,
        epochs: 2,
        batch_size: args.batch_size,
        device: device.to_string(),
        ..TrainConfig::default()
    };
    let t0 = Instant::now();
    let kernels = ikd::KernelPolicy::from_env();
    let summary = ikd::train(
        &config,
        &run_dir,
        TrainOptions { progress: true, kernels, ..Default::default() },
    )?;
    let wall = t0.elapsed().as_secs_f64();
    let log = ikd::RunDir::new(&run_dir).train_log();
    let text =
        std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
    let entries: Vec<LogEntry> =
        text.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    // per epoch, the steps after the warm-up
    let timed = |epoch: u64| -> Result<Vec<&LogEntry>> {
        let t: Vec<&LogEntry> = entries
            .iter()
            .filter(|e| e.epoch == epoch && e.step - epoch * total > args.warmup)
            .collect();
        anyhow::ensure!(
            t.len() as u64 == args.steps,
            "the training log holds {} timed steps in epoch {epoch}, not {}",
            t.len(),
            args.steps
        );
        Ok(t)
    };
    let (first, second) = (timed(0)?, timed(1)?);
    let wall_of = |t: &[&LogEntry]| t.iter().map(|e| e.wall_s).sum::<f64>();
    // the header check before training, shared by every step of the run
    let checks = summary.loading_seconds * args.steps as f64 / (2 * total) as f64;
    Ok(Measured {
        steps_s: second.iter().map(|e| args.batch_size as f64 / e.images_per_s).sum(),
        first_s: wall_of(&first) + checks,
        second_s: wall_of(&second) + checks,
        run_s: wall * args.steps as f64 / total as f64,
    })
}
