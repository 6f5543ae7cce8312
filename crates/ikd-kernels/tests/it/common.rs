//! Helpers shared by the tests: deterministic inputs, a probe whose gradient is known, central
//! finite differences and error measures.

use candle_core::{DType, Device, Tensor, Var};
use ikd_kernels::{KernelPolicy, Simd};

/// Every kernel on (the default policy).
pub fn on() -> KernelPolicy {
    KernelPolicy::default()
}

/// The default policy capped at each vector set this CPU has ([`Simd::supported`]): the
/// paths a test runs to cover every code path the machine can (on an AVX-512 CPU, the AVX2
/// kernels as well).
pub fn paths() -> Vec<KernelPolicy> {
    Simd::supported().into_iter().map(|simd| KernelPolicy { simd, ..on() }).collect()
}

/// Deterministic values in (−2, 2).
pub fn rand(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|k| {
            let t = (k as f64 + 1.) * 0.618_033_988_75 + seed as f64 * 0.414_213_562;
            ((t * 12.9898).sin() * 43_758.545_3).fract() * 2.
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
}

/// `Σ y·r` for a fixed random `r`: its gradient with respect to `y` is `r`.
pub fn probe(y: &Tensor, seed: u64) -> Tensor {
    let r = rand(y.dims(), seed, y.dtype());
    y.mul(&r).unwrap().sum_all().unwrap()
}

/// Central differences of `f` at a spread of coordinates of `v`, against `grad`.
pub fn check_fd(v: &Var, grad: &Tensor, f: impl Fn() -> f64, what: &str) {
    let g = to_vec(grad);
    let base = to_vec(v.as_tensor());
    let n = base.len();
    let h = 1e-5;
    let picks: Vec<usize> = if n <= 24 {
        (0..n).collect()
    } else {
        (0..24).map(|i| (i * n / 24 + i % 3).min(n - 1)).collect()
    };
    for &i in &picks {
        let set = |d: f64| {
            let mut b = base.clone();
            b[i] += d;
            v.set(&Tensor::from_vec(b, v.dims(), &Device::Cpu).unwrap()).unwrap();
        };
        set(h);
        let up = f();
        set(-h);
        let down = f();
        set(0.);
        let fd = (up - down) / (2. * h);
        let tol = 1e-6 * (1. + fd.abs());
        assert!(
            (fd - g[i]).abs() < tol,
            "{what}[{i}]: analytic {} vs finite difference {fd}",
            g[i]
        );
    }
}

/// ‖a − b‖₂ / ‖b‖₂ in f64.
pub fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let (a, b) = (to_vec(a), to_vec(b));
    let num: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    num / den.max(1e-30)
}

pub fn to_vec(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}
