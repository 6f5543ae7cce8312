//! One training step of a randomly initialised HRNet-W18-small student on a random batch, and its
//! weights saved in timm's layout.
//!
//! `cargo run --release -p ikd-hrnet --example student_step -- [weights.safetensors]`

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use ikd_hrnet::{HrNet, HrNetConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::Cpu;
    let cfg = HrNetConfig::w18_small();
    let vars = VarMap::new();
    let student = HrNet::new(&cfg, VarBuilder::from_varmap(&vars, DType::F32, &dev))?;
    let mut opt = AdamW::new(ikd_hrnet::trainable_vars(&vars), ParamsAdamW::default())?;
    let x = Tensor::randn(0f32, 1., (2, 3, 64, 64), &dev)?;
    let feats = student.ikd_features(&x, true)?; // 4 maps, all (2, C_i, 16, 16)
    for (i, f) in feats.iter().enumerate() {
        println!("x{i}: {:?}", f.dims());
    }
    let loss = feats[1].sqr()?.mean_all()?;
    opt.backward_step(&loss)?;
    println!("loss before the step {:.4}", loss.to_scalar::<f32>()?);
    let out = std::env::args()
        .nth(1)
        .map_or_else(|| std::env::temp_dir().join("student.safetensors"), Into::into);
    ikd_hrnet::save_safetensors(&vars, &out)?;
    println!("saved {}", out.display());
    Ok(())
}
