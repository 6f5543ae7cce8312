//! Helpers shared by the test modules.

use candle_core::{DType, Device, Tensor, Var};

/// Relative error |a − b| / max(|b|, tiny).
pub fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-30)
}

/// Relative L2 error ‖a − b‖ / ‖b‖ (‖a − b‖ when b is zero).
pub fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
    let b = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
    let diff = (&a - &b).unwrap().sqr().unwrap().sum_all().unwrap();
    let diff = diff.to_scalar::<f64>().unwrap().sqrt();
    let norm = b.sqr().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap().sqrt();
    if norm == 0.0 {
        diff
    } else {
        diff / norm
    }
}

/// A tensor from f32 values.
pub fn tensor(v: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// `n` trainable student maps.
pub fn vars(maps: &[Tensor]) -> Vec<Var> {
    maps.iter().map(|t| Var::from_tensor(t).unwrap()).collect()
}

/// The tensors behind some vars.
pub fn as_tensors(vars: &[Var]) -> Vec<Tensor> {
    vars.iter().map(|v| v.as_tensor().clone()).collect()
}

/// Deterministic pseudo-random maps (a small LCG, so tests need no RNG crate).
pub fn lcg_map(seed: u64, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let v = (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    tensor(v, shape)
}
