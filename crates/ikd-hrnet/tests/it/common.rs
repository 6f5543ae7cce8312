//! Helpers shared by the tests.

use std::path::PathBuf;

use candle_core::Tensor;

/// Held by every test that switches a kernel path (`kernels::set_winograd*`) or checks which
/// path ran: the switches are process-wide and the tests of this binary run in parallel.
pub static PATH_SWITCHES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`PATH_SWITCHES`] (a test that panicked while holding it does not block the others).
pub fn switches() -> std::sync::MutexGuard<'static, ()> {
    PATH_SWITCHES.lock().unwrap_or_else(|e| e.into_inner())
}

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
