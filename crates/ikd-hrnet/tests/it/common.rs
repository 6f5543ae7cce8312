//! Helpers shared by the tests.

use std::path::PathBuf;

use candle_core::Tensor;

pub fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/hrnet"))
}

pub fn tiny() -> PathBuf {
    fixtures().join("tiny")
}

/// ‖a − b‖₂ / ‖b‖₂ in f64.
pub fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let a: Vec<f64> =
        a.to_dtype(candle_core::DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f64> =
        b.to_dtype(candle_core::DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let num: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    num / den.max(1e-30)
}

pub fn to_vec(t: &Tensor) -> Vec<f64> {
    t.to_dtype(candle_core::DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

/// `Σ y·r` for a fixed `r` (a scalar whose gradient with respect to `y` is `r`).
pub fn probe(y: &Tensor) -> Tensor {
    let n = y.elem_count();
    let r: Vec<f64> = (0..n).map(|k| ((k as f64 + 1.) * 0.754_877_666).fract() - 0.5).collect();
    let r = Tensor::from_vec(r, y.dims(), y.device()).unwrap().to_dtype(y.dtype()).unwrap();
    y.mul(&r).unwrap().sum_all().unwrap()
}
