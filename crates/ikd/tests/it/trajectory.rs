//! The training step against PyTorch: 12 AdamW steps of the published recipe on the tiny HRNet
//! (`../shared/fixtures/trajectory/tiny/`).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use ikd::optim::AdamWParams;
use ikd::{Backbone, Distiller, TeacherWeights};
use ikd_distill::IkdLossConfig;
use ikd_hrnet::HrNetConfig;

/// The shared reference fixtures (`../shared/fixtures` beside the checkout).
pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

/// One step of a PyTorch trajectory fixture.
#[derive(serde::Deserialize)]
pub(crate) struct Step {
    pub(crate) step: usize,
    pub(crate) loss: f64,
    pub(crate) margins: Vec<f64>,
}

#[derive(serde::Deserialize)]
struct Trajectory {
    lr: f64,
    levels: Vec<usize>,
    level_weights: Vec<f64>,
    alpha: f64,
    beta: f64,
    gamma: f64,
    steps: Vec<Step>,
}

fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.flatten_all().unwrap().to_dtype(candle_core::DType::F64).unwrap();
    let b = b.flatten_all().unwrap().to_dtype(candle_core::DType::F64).unwrap();
    let num = (&a - &b).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
    let den = b.sqr().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
    (num / den.max(1e-30)).sqrt()
}

#[test]
fn twelve_adamw_steps_follow_pytorch() {
    let dir = fixtures().join("trajectory/tiny");
    let traj: Trajectory =
        serde_json::from_str(&std::fs::read_to_string(dir.join("trajectory.json")).unwrap())
            .unwrap();
    let backbone = Backbone {
        name: "tiny".into(),
        config: HrNetConfig::from_json_file(fixtures().join("hrnet/tiny/config.json")).unwrap(),
    };
    let loss = IkdLossConfig {
        alpha: traj.alpha,
        beta: traj.beta,
        gamma: traj.gamma,
        levels: traj.levels.clone(),
        weights: traj.level_weights.clone(),
        ..IkdLossConfig::paper()
    };
    let dev = Device::Cpu;
    let mut d = Distiller::new(
        &backbone,
        &TeacherWeights::File(fixtures().join("hrnet/tiny/weights.safetensors")),
        Some(&dir.join("student_init.safetensors")),
        loss,
        AdamWParams { lr: traj.lr, ..Default::default() },
        0,
        &dev,
    )
    .unwrap();
    let batches = candle_core::safetensors::load(dir.join("batches.safetensors"), &dev).unwrap();
    let batches = &batches["batches"];
    assert_eq!(batches.dim(0).unwrap(), traj.steps.len());
    for (k, want) in traj.steps.iter().enumerate() {
        assert_eq!(want.step, k);
        let got = d.train_step(&batches.get(k).unwrap()).unwrap();
        let rel = (got.loss - want.loss).abs() / want.loss.abs();
        assert!(rel < 1e-4, "step {k}: loss {} vs PyTorch {} (rel {rel:e})", got.loss, want.loss);
        for (l, (g, w)) in got.margins.iter().zip(&want.margins).enumerate() {
            let rel = (g - w).abs() / w.abs();
            assert!(rel < 1e-4, "step {k} level {l}: margin {g} vs PyTorch {w} (rel {rel:e})");
        }
    }
    let want = candle_core::safetensors::load(dir.join("student_final.safetensors"), &dev).unwrap();
    let got: std::collections::HashMap<String, Tensor> = ikd_hrnet::named_vars(d.student_vars())
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    let (mut all_got, mut all_want, mut worst) = (Vec::new(), Vec::new(), Vec::new());
    for (name, w) in &want {
        if ikd_hrnet::is_skipped_key(name) {
            continue;
        }
        let g = got.get(name).unwrap_or_else(|| panic!("student lacks `{name}`"));
        assert_eq!(g.dims(), w.dims(), "`{name}`");
        worst.push((rel_l2(g, w), name.clone()));
        all_got.push(g.flatten_all().unwrap());
        all_want.push(w.flatten_all().unwrap());
    }
    assert_eq!(all_got.len(), got.len(), "every student tensor compared");
    worst.sort_by(|a, b| b.0.total_cmp(&a.0));
    eprintln!("largest per-tensor relative L2 errors: {:?}", &worst[..5]);
    let rel = rel_l2(&Tensor::cat(&all_got, 0).unwrap(), &Tensor::cat(&all_want, 0).unwrap());
    eprintln!("final weights: relative L2 error {rel:e}");
    assert!(rel < 1e-4, "final weights: relative L2 error {rel:e}");
}
