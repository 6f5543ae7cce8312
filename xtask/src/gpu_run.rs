//! `cargo xtask gpu-run` (the bundle's `run.sh` calls `xtask gpu-run`): the CUDA check on a GPU
//! machine, as one JSON document.
//!
//! 1. Parity: the tiny HRNet's eval and train-mode features on the device against timm's
//!    (`fixtures/hrnet/tiny/io.safetensors`) and against the CPU on the same input; the 12 AdamW
//!    steps of `fixtures/trajectory/tiny` (loss, margins, final student) on the device.
//! 2. Speed: hrnet_w32 at 256², batch 2 — one IKD training step and one eval pass (teacher and
//!    student forwards and the anomaly map), median of timed runs after a warm-up.
//! 3. A synthetic category at the paper's settings (256², 50 epochs, random teacher — no hub
//!    here): trained and tested, with its wall time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use ikd::optim::AdamWParams;
use ikd::{Backbone, Distiller, TeacherWeights, TestOptions, TrainConfig, TrainOptions};
use ikd_distill::IkdLossConfig;
use ikd_hrnet::{HrNet, HrNetConfig};
use serde_json::{json, Value};

/// The largest relative error a faithful float32 implementation is held to (the CPU tests'
/// bound).
const TOL: f64 = 1e-4;

/// Arguments of `cargo xtask gpu-run`.
#[derive(Debug, Clone, clap::Args)]
pub struct GpuRunArgs {
    /// The device to check.
    #[arg(long, default_value = "cuda:0")]
    pub device: String,
    /// The parity fixtures (`hrnet/tiny`, `trajectory/tiny`).
    #[arg(long)]
    pub fixtures: PathBuf,
    /// Write the JSON here.
    #[arg(long)]
    pub json: PathBuf,
    /// Scratch folder for the synthetic category and its run.
    #[arg(long)]
    pub scratch: PathBuf,
    /// Timed runs of each speed case (after 3 warm-up runs).
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Training images of the synthetic category (MVTec AD's categories have 60–391).
    #[arg(long, default_value_t = 200)]
    pub train_images: usize,
    /// Test images of the synthetic category (a third defect-free).
    #[arg(long, default_value_t = 60)]
    pub test_images: usize,
    /// Epochs of the synthetic category (the paper's: 50).
    #[arg(long, default_value_t = 50)]
    pub epochs: u64,
    /// Skip the synthetic category.
    #[arg(long)]
    pub no_train: bool,
}

/// `cargo xtask gpu-run`: every part is attempted; the JSON records each part's result or error,
/// and the command fails when a parity check fails or a part could not run.
pub fn run(args: &GpuRunArgs) -> Result<()> {
    let device = ikd::parse_device(&args.device)?;
    let mut doc = json!({"device": args.device, "tolerance": TOL});
    let mut failed = Vec::new();
    let mut part = |name: &str, r: Result<Value>| match r {
        Ok(v) => {
            if v["pass"] == false {
                failed.push(name.to_string());
            }
            doc[name] = v;
        }
        Err(e) => {
            failed.push(name.to_string());
            doc[name] = json!({"error": format!("{e:#}")});
        }
    };
    part("features", features(&args.fixtures, &device));
    part("trajectory", trajectory(&args.fixtures, &device));
    part("speed", speed(&device, args.runs));
    if !args.no_train {
        part("synthetic_category", synthetic(args, &device));
    }
    doc["failed"] = json!(failed);
    let text = serde_json::to_string_pretty(&doc)?;
    ikd_io::atomic_write(&args.json, text.as_bytes())?;
    println!("{text}");
    if !failed.is_empty() {
        bail!("gpu-run: {} failed (see {})", failed.join(", "), args.json.display());
    }
    Ok(())
}

fn rel_l2(a: &Tensor, b: &Tensor) -> Result<f64> {
    let a = a.to_device(&Device::Cpu)?.flatten_all()?.to_dtype(DType::F64)?;
    let b = b.to_device(&Device::Cpu)?.flatten_all()?.to_dtype(DType::F64)?;
    let num = (&a - &b)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
    let den = b.sqr()?.sum_all()?.to_scalar::<f64>()?;
    Ok((num / den.max(1e-30)).sqrt())
}

/// The tiny HRNet's features on `device` against timm's and against the CPU's.
fn features(fixtures: &Path, device: &Device) -> Result<Value> {
    let dir = fixtures.join("hrnet").join("tiny");
    let cfg = HrNetConfig::from_json_file(dir.join("config.json"))?;
    let io = ikd_hrnet::read_safetensors(dir.join("io.safetensors"))?;
    let x = io.get("input").context("io.safetensors has no input")?;
    let mut out = json!({});
    let mut worst: f64 = 0.0;
    for train in [false, true] {
        let mode = if train { "train" } else { "eval" };
        // fresh models: train mode moves the running statistics
        let (gpu, _g) = HrNet::from_timm_file(&cfg, dir.join("weights.safetensors"), device)?;
        let (cpu, _c) = HrNet::from_timm_file(&cfg, dir.join("weights.safetensors"), &Device::Cpu)?;
        let on_gpu = gpu.ikd_features(&x.to_device(device)?, train)?;
        let on_cpu = cpu.ikd_features(x, train)?;
        for (i, (g, c)) in on_gpu.iter().zip(&on_cpu).enumerate() {
            let key = format!("{mode}_x{i}");
            let Some(want) = io.get(&key) else { continue };
            let vs_timm = rel_l2(g, want)?;
            let vs_cpu = rel_l2(g, c)?;
            worst = worst.max(vs_timm).max(vs_cpu);
            out[&key] = json!({"vs_timm": vs_timm, "vs_cpu": vs_cpu});
        }
    }
    out["worst"] = json!(worst);
    out["pass"] = json!(worst < TOL);
    Ok(out)
}

/// `trajectory.json`: the recipe and PyTorch's loss and margins of each step.
struct Trajectory {
    lr: f64,
    levels: Vec<usize>,
    level_weights: Vec<f64>,
    alpha: f64,
    beta: f64,
    gamma: f64,
    /// (loss, margins) per step.
    steps: Vec<(f64, Vec<f64>)>,
}

impl Trajectory {
    fn load(path: &Path) -> Result<Self> {
        let v: Value = serde_json::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("{}: not JSON", path.display()))?;
        let num = |key: &str| {
            v[key].as_f64().with_context(|| format!("{}: no number `{key}`", path.display()))
        };
        let nums = |x: &Value| -> Vec<f64> {
            x.as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default()
        };
        let steps = v["steps"]
            .as_array()
            .with_context(|| format!("{}: no steps", path.display()))?
            .iter()
            .map(|s| {
                Ok((s["loss"].as_f64().context("a step without its loss")?, nums(&s["margins"])))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Trajectory {
            lr: num("lr")?,
            levels: nums(&v["levels"]).into_iter().map(|l| l as usize).collect(),
            level_weights: nums(&v["level_weights"]),
            alpha: num("alpha")?,
            beta: num("beta")?,
            gamma: num("gamma")?,
            steps,
        })
    }
}

/// The 12 AdamW steps of the fixture on `device`: each step's loss and margins and the final
/// student against PyTorch's.
fn trajectory(fixtures: &Path, device: &Device) -> Result<Value> {
    let dir = fixtures.join("trajectory").join("tiny");
    let traj = Trajectory::load(&dir.join("trajectory.json"))?;
    let backbone = Backbone {
        name: "tiny".into(),
        config: HrNetConfig::from_json_file(fixtures.join("hrnet/tiny/config.json"))?,
    };
    let loss = IkdLossConfig {
        alpha: traj.alpha,
        beta: traj.beta,
        gamma: traj.gamma,
        levels: traj.levels.clone(),
        weights: traj.level_weights.clone(),
        ..IkdLossConfig::paper()
    };
    let mut d = Distiller::new(
        &backbone,
        &TeacherWeights::File(fixtures.join("hrnet/tiny/weights.safetensors")),
        Some(&dir.join("student_init.safetensors")),
        loss,
        AdamWParams { lr: traj.lr, ..Default::default() },
        0,
        device,
    )?;
    let batches = candle_core::safetensors::load(dir.join("batches.safetensors"), device)?;
    let batches = batches.get("batches").context("batches.safetensors has no batches")?;
    let mut worst_step: f64 = 0.0;
    let mut losses = Vec::new();
    for (k, (want_loss, want_margins)) in traj.steps.iter().enumerate() {
        let got = d.train_step(&batches.get(k)?)?;
        let mut rel = (got.loss - want_loss).abs() / want_loss.abs();
        for (g, w) in got.margins.iter().zip(want_margins) {
            rel = rel.max((g - w).abs() / w.abs());
        }
        worst_step = worst_step.max(rel);
        losses.push(json!({"step": k, "loss": got.loss, "pytorch": want_loss}));
    }
    let want = candle_core::safetensors::load(dir.join("student_final.safetensors"), &Device::Cpu)?;
    let got: HashMap<String, Tensor> = ikd_hrnet::named_vars(d.student_vars())
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    let (mut all_got, mut all_want) = (Vec::new(), Vec::new());
    for (name, w) in &want {
        if ikd_hrnet::is_skipped_key(name) {
            continue;
        }
        let g = got.get(name).with_context(|| format!("the student lacks `{name}`"))?;
        all_got.push(g.to_device(&Device::Cpu)?.flatten_all()?);
        all_want.push(w.flatten_all()?);
    }
    let weights = rel_l2(&Tensor::cat(&all_got, 0)?, &Tensor::cat(&all_want, 0)?)?;
    Ok(json!({
        "steps": losses,
        "worst_step_relative_error": worst_step,
        "final_weights_relative_l2": weights,
        "pass": worst_step < TOL && weights < TOL,
    }))
}

/// Median and minimum milliseconds of `runs` calls of `f` after 3 warm-up calls, the device
/// synchronised around each.
fn time_ms(device: &Device, runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<Value> {
    for _ in 0..3 {
        f()?;
    }
    device.synchronize()?;
    let mut ms = Vec::new();
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        f()?;
        device.synchronize()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok(json!({"median_ms": ms[ms.len() / 2], "min_ms": ms[0], "runs": ms.len()}))
}

/// hrnet_w32 at 256², batch 2: a training step and an eval pass.
fn speed(device: &Device, runs: usize) -> Result<Value> {
    let backbone = Backbone::by_name("hrnet_w32")?;
    let mut d = Distiller::new(
        &backbone,
        &TeacherWeights::Random,
        None,
        IkdLossConfig::paper(),
        AdamWParams::default(),
        0,
        device,
    )?;
    let x = Tensor::randn(0f32, 1.0, (2, 3, 256, 256), device)?;
    let train = time_ms(device, runs, || {
        d.train_step(&x)?;
        Ok(())
    })?;
    let eval = time_ms(device, runs, || {
        d.anomaly_maps(&x)?;
        Ok(())
    })?;
    Ok(json!({"backbone": "hrnet_w32", "image_size": 256, "batch": 2,
              "train_step": train, "eval_teacher_student_anomaly_map": eval}))
}

/// A synthetic category at the paper's settings, trained and tested on `device`.
fn synthetic(args: &GpuRunArgs, device: &Device) -> Result<Value> {
    use ikd_data::synthetic::{generate, SyntheticConfig, Texture};
    let data = args.scratch.join("data");
    let run = args.scratch.join("run");
    if run.exists() {
        std::fs::remove_dir_all(&run)?;
    }
    let t = Instant::now();
    let cfg = SyntheticConfig {
        categories: vec![Texture::Carpet],
        image_size: 256,
        n_train: args.train_images,
        n_test_good: args.test_images.div_ceil(3),
        n_test_defect: args.test_images - args.test_images.div_ceil(3),
        seed: 7,
    };
    generate(&cfg, &data)?;
    let generated = t.elapsed().as_secs_f64();
    let config = TrainConfig {
        data_root: data,
        category: Texture::Carpet.name().to_string(),
        device: args.device.clone(),
        teacher_weights: TeacherWeights::Random,
        epochs: args.epochs,
        ..TrainConfig::default()
    };
    let _ = device;
    let t = Instant::now();
    let opts = TrainOptions { kernels: ikd::KernelPolicy::from_env(), ..Default::default() };
    let s = ikd::train(&config, &run, opts)?;
    let trained = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let topts = TestOptions {
        device: Some(args.device.clone()),
        progress: false,
        ..TestOptions::default()
    };
    let m = ikd::test_run(&run, &topts)?;
    let tested = t.elapsed().as_secs_f64();
    Ok(json!({
        "backbone": config.backbone, "image_size": config.image_size, "epochs": config.epochs,
        "batch_size": config.batch_size, "train_images": args.train_images, "steps": s.steps,
        "generate_s": generated, "train_s": trained, "test_s": tested,
        "images_per_s": s.images_per_s, "pixel_auroc": m.pixel_auroc, "au_pro": m.au_pro,
        "teacher": "random (no hub on the GPU machine)",
    }))
}
