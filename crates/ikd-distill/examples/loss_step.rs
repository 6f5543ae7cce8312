//! The IKD loss on random teacher and student feature maps: one step (loss, margins, kept
//! pixels, gradient), its state saved and resumed, and the anomaly map of the same features.
//!
//! `cargo run --release -p ikd-distill --example loss_step`

use candle_core::{Device, Tensor, Var};
use ikd_distill::{anomaly_map, IkdLoss, IkdLossConfig, IkdLossState};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::Cpu;
    // The four IKD feature maps x0..x3 (N, C, H, W) of the frozen teacher and of the student.
    let teacher: Vec<Tensor> = (0..4)
        .map(|_| Tensor::randn(0f32, 1.0, (2, 32, 16, 16), &dev))
        .collect::<Result<_, _>>()?;
    let student: Vec<Var> =
        (0..4).map(|_| Var::randn(0f32, 1.0, (2, 32, 16, 16), &dev)).collect::<Result<_, _>>()?;
    let student_maps: Vec<Tensor> = student.iter().map(|v| v.as_tensor().clone()).collect();

    let mut loss = IkdLoss::new(IkdLossConfig::paper())?; // levels (1, 2), weights (1, 2)
    let out = loss.forward(&teacher, &student_maps)?; // updates the margins
    let grads = out.total.backward()?; // reaches the student only
    println!(
        "loss {} per level {:?} margins {:?} kept {:?}",
        out.total.to_scalar::<f32>()?,
        out.per_level,
        out.margins,
        out.kept
    );
    assert!(grads.get(&student[1]).is_some());

    let state = std::env::temp_dir().join(format!("ikd-loss-state-{}.json", std::process::id()));
    loss.state().save_json(&state)?;
    let _resumed = IkdLoss::with_state(IkdLossConfig::paper(), IkdLossState::load_json(&state)?)?;
    std::fs::remove_file(&state)?;

    let map = anomaly_map(&teacher, &student_maps, &[1, 2])?;
    println!("anomaly map {:?}", map.dims());
    Ok(())
}
