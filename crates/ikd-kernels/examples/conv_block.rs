//! A residual block's forward and backward pass on ikd-kernels' CPU kernels, checked against the
//! same layers on candle's own ops, with both timed.
//!
//! `cargo run --release -p ikd-kernels --example conv_block`

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use ikd_kernels::KernelPolicy;

fn block(x: &Var, w: &Var, p: &KernelPolicy) -> candle_core::Result<(Tensor, f64)> {
    let dev = x.device();
    let (gamma, beta) = (Tensor::ones(32, DType::F32, dev)?, Tensor::zeros(32, DType::F32, dev)?);
    let start = Instant::now();
    // conv → train-mode batch norm + ReLU → residual add + ReLU, then the backward pass
    let y = ikd_kernels::conv2d(x, w, 1, 1, p)?;
    let (y, _stats) = ikd_kernels::batch_norm_train(&y, &gamma, &beta, 1e-5, true, p)?;
    let y = ikd_kernels::add_relu(&y, x, p)?;
    let grads = y.sum_all()?.backward()?;
    assert_eq!(grads.get(w).map(Tensor::dims), Some(&[32, 32, 3, 3][..]));
    Ok((y, start.elapsed().as_secs_f64()))
}

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1., (2, 32, 64, 64), &dev)?)?;
    let w = Var::from_tensor(&Tensor::randn(0f32, 0.05, (32, 32, 3, 3), &dev)?)?;
    let (ours, t_ours) = block(&x, &w, &KernelPolicy::default())?;
    let (theirs, t_candle) = block(&x, &w, &KernelPolicy::candle())?;
    let diff = (ours - theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
    println!("ikd-kernels {t_ours:.4} s, candle {t_candle:.4} s, largest difference {diff:.2e}");
    assert!(diff < 1e-3);
    Ok(())
}
