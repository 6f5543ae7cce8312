//! `cargo xtask speed`: training throughput on a synthetic MVTec-sized category — a fixed number
//! of optimiser steps after a warm-up, reported as steps/s and images/s (used by `gpu-check.sh`).

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
    let (steps, seconds, wall) = result?;
    let images = steps as f64 * args.batch_size as f64;
    println!(
        "speed: {} {}² batch {} on {device}: {steps} steps in {seconds:.2} s = {:.3} steps/s, {:.2} images/s (training steps only; {:.3} steps/s with data loading)",
        args.backbone,
        args.image_size,
        args.batch_size,
        steps as f64 / seconds,
        images / seconds,
        steps as f64 / wall
    );
    Ok(())
}

fn measure(args: &SpeedArgs, device: &str, scratch: &std::path::Path) -> Result<(u64, f64, f64)> {
    anyhow::ensure!(args.steps > 0, "--steps must be at least 1");
    let total = args.warmup + args.steps;
    let data = scratch.join("data");
    let n_train = (total as usize * args.batch_size).max(2);
    let cfg = SyntheticConfig {
        categories: vec![Texture::Carpet],
        image_size: args.image_size,
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
        epochs: 1,
        batch_size: args.batch_size,
        max_steps: Some(total),
        device: device.to_string(),
        ..TrainConfig::default()
    };
    let t0 = Instant::now();
    let kernels = ikd::KernelPolicy::from_env();
    ikd::train(&config, &run_dir, TrainOptions { progress: true, kernels, ..Default::default() })?;
    let wall = t0.elapsed().as_secs_f64();
    let log = ikd::RunDir::new(&run_dir).train_log();
    let text =
        std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
    let entries: Vec<LogEntry> =
        text.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let timed: Vec<&LogEntry> = entries.iter().filter(|e| e.step > args.warmup).collect();
    anyhow::ensure!(
        timed.len() as u64 == args.steps,
        "the training log holds {} timed steps, not {}",
        timed.len(),
        args.steps
    );
    let seconds: f64 = timed.iter().map(|e| args.batch_size as f64 / e.images_per_s).sum();
    Ok((args.steps, seconds, wall * args.steps as f64 / total as f64))
}
