//! Convolutions: the im2col path (every geometry; f64, where Winograd never runs) and the fused
//! convolution + channel affine map, against candle and finite differences.

use candle_core::{DType, Device, Tensor, Var};
use ikd_kernels::{channel_affine, conv2d, conv2d_affine, KernelPolicy};

use crate::common::{check_fd, on, probe, rand, rel_l2};

/// (N, C, H, W, O, k, stride, padding)
type ConvCase = (usize, usize, usize, usize, usize, usize, usize, usize);

const CONVS: &[ConvCase] = &[
    (1, 3, 7, 7, 4, 3, 1, 1),
    (2, 5, 8, 8, 3, 3, 2, 1),
    (3, 2, 9, 9, 4, 1, 1, 0),
    (2, 4, 7, 7, 6, 1, 2, 0),
    (1, 1, 4, 4, 2, 3, 2, 0),
    (2, 3, 6, 6, 2, 5, 1, 2),
    (2, 3, 11, 11, 5, 3, 2, 1),
    (1, 18, 16, 16, 36, 3, 2, 1),
    (2, 32, 16, 16, 32, 3, 1, 1),
    (2, 2, 2, 2, 3, 3, 1, 1),
    (1, 2, 1, 1, 2, 3, 1, 1),
    (2, 3, 6, 6, 2, 3, 1, 0),
    (1, 2, 5, 5, 2, 1, 1, 1),
    (2, 2, 3, 3, 2, 5, 1, 2),
];

#[test]
fn conv2d_matches_candle_values_and_gradients() {
    for &(n, c, h, w, o, k, s, p) in CONVS {
        for dtype in [DType::F64, DType::F32] {
            let x = Var::from_tensor(&rand(&[n, c, h, w], 1, dtype)).unwrap();
            let wt = Var::from_tensor(&rand(&[o, c, k, k], 2, dtype)).unwrap();
            let ours = conv2d(&x, &wt, s, p, &on()).unwrap();
            let reference = x.conv2d(&wt, p, s, 1, 1).unwrap();
            let case = format!("{:?} {dtype:?}", (n, c, h, w, o, k, s, p));
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            assert!(rel_l2(&ours, &reference) < tol, "{case}: forward");
            let g1 = probe(&ours, 3).backward().unwrap();
            let g2 = probe(&reference, 3).backward().unwrap();
            for (v, name) in [(&x, "input"), (&wt, "weight")] {
                let (a, b) = (g1.get(v).unwrap(), g2.get(v).unwrap());
                assert!(rel_l2(a, b) < tol, "{case}: {name} gradient {}", rel_l2(a, b));
            }
        }
    }
}

#[test]
fn conv2d_gradients_match_finite_differences_on_non_square_inputs() {
    // candle's conv2d backward mishandles non-square inputs, so these use finite differences.
    for &(n, c, h, w, o, k, s, p) in &[
        (2, 3, 5, 8, 2, 3, 1, 1),
        (1, 2, 9, 6, 3, 3, 2, 1),
        (3, 2, 4, 7, 2, 1, 2, 0),
        (2, 2, 3, 6, 2, 5, 1, 2),
        (1, 2, 6, 1, 2, 3, 1, 1),
    ] {
        let x = Var::from_tensor(&rand(&[n, c, h, w], 4, DType::F64)).unwrap();
        let wt = Var::from_tensor(&rand(&[o, c, k, k], 5, DType::F64)).unwrap();
        let f = || probe(&conv2d(&x, &wt, s, p, &on()).unwrap(), 6).to_scalar::<f64>().unwrap();
        let y = conv2d(&x, &wt, s, p, &on()).unwrap();
        assert_eq!(y.dims(), x.conv2d(&wt, p, s, 1, 1).unwrap().dims());
        assert!(rel_l2(&y, &x.conv2d(&wt, p, s, 1, 1).unwrap()) < 1e-12);
        let g = probe(&y, 6).backward().unwrap();
        check_fd(&x, g.get(&x).unwrap(), f, "input");
        check_fd(&wt, g.get(&wt).unwrap(), f, "weight");
    }
}

#[test]
fn conv2d_rejects_mismatched_channels() {
    let x = Tensor::zeros((1, 3, 8, 8), DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::zeros((4, 2, 3, 3), DType::F32, &Device::Cpu).unwrap();
    let err = conv2d(&x, &w, 1, 1, &on()).unwrap_err().to_string();
    assert!(err.contains("channels"), "{err}");
}

#[test]
fn conv2d_sweep_of_small_geometries_matches_candle_and_finite_differences() {
    let mut cases = 0;
    for k in [1, 2, 3, 5] {
        for s in [1, 2, 3] {
            for p in 0..=2 {
                for h in 1..=7 {
                    if h + 2 * p < k {
                        continue;
                    }
                    let n = 1 + (h + k + s + p) % 3;
                    let x = Var::from_tensor(&rand(&[n, 2, h, h], 21, DType::F64)).unwrap();
                    let w = Var::from_tensor(&rand(&[3, 2, k, k], 22, DType::F64)).unwrap();
                    let ours = conv2d(&x, &w, s, p, &on()).unwrap();
                    let reference = x.conv2d(&w, p, s, 1, 1).unwrap();
                    let case = format!("n {n} h {h} k {k} s {s} p {p}");
                    assert!(rel_l2(&ours, &reference) < 1e-12, "{case}: forward");
                    // candle's conv2d backward fails on some of these geometries (it guesses
                    // the transposed convolution's output padding): finite differences instead
                    let g = probe(&ours, 23).backward().unwrap();
                    let f = || {
                        probe(&conv2d(&x, &w, s, p, &on()).unwrap(), 23).to_scalar::<f64>().unwrap()
                    };
                    check_fd(&x, g.get(&x).unwrap(), f, &format!("{case}: input"));
                    check_fd(&w, g.get(&w).unwrap(), f, &format!("{case}: weight"));
                    cases += 1;
                }
            }
        }
    }
    assert!(cases > 200, "{cases} cases");
}

/// The fused convolution + eval batch norm (+ ReLU) against the two ops it replaces: values and
/// the gradients of input, weight, scale and shift (Winograd, im2col and 1×1 geometries).
#[test]
fn conv2d_affine_matches_conv_then_channel_affine() {
    let cases: &[(usize, usize, usize, usize, usize, usize)] =
        &[(2, 5, 33, 9, 3, 1), (1, 4, 9, 6, 3, 2), (2, 6, 8, 7, 1, 1), (3, 3, 5, 2, 3, 1)];
    for &(n, c, h, o, k, s) in cases {
        for dtype in [DType::F64, DType::F32] {
            for relu in [false, true] {
                let case = format!("{:?} {dtype:?} relu {relu}", (n, c, h, o, k, s));
                let p = k / 2;
                let x = Var::from_tensor(&rand(&[n, c, h, h], 51, dtype)).unwrap();
                let w = Var::from_tensor(&rand(&[o, c, k, k], 52, dtype)).unwrap();
                let a = Var::from_tensor(&rand(&[o], 53, dtype)).unwrap();
                let b = Var::from_tensor(&rand(&[o], 54, dtype)).unwrap();
                let ours = conv2d_affine(&x, &w, s, p, (&a, &b), relu, &on()).unwrap();
                let conv = conv2d(&x, &w, s, p, &on()).unwrap();
                let reference = channel_affine(&conv, &a, &b, relu, &on()).unwrap();
                let tol = if dtype == DType::F64 { 1e-12 } else { 2e-6 };
                assert!(rel_l2(&ours, &reference) < tol, "{case}: forward");
                let g1 = probe(&ours, 55).backward().unwrap();
                let g2 = probe(&reference, 55).backward().unwrap();
                for (v, name) in [(&x, "input"), (&w, "weight"), (&a, "scale"), (&b, "shift")] {
                    let err = rel_l2(g1.get(v).unwrap(), g2.get(v).unwrap());
                    assert!(err < tol * 10., "{case}: {name} gradient {err}");
                }
            }
        }
    }
}

/// candle's ops (the policy's fallback) give candle's convolution, a 1×1 stride-1 one as a
/// batched matrix product: values and gradients.
#[test]
fn conv2d_under_the_candle_policy_is_candles_convolution() {
    for &(n, c, h, w, o, k, s, p) in &[(2, 5, 7, 6, 3, 1, 1, 0), (1, 3, 6, 6, 4, 3, 2, 1)] {
        let x = Var::from_tensor(&rand(&[n, c, h, w], 71, DType::F64)).unwrap();
        let wt = Var::from_tensor(&rand(&[o, c, k, k], 72, DType::F64)).unwrap();
        let ours = conv2d(&x, &wt, s, p, &KernelPolicy::candle()).unwrap();
        let reference = x.conv2d(&wt, p, s, 1, 1).unwrap();
        assert!(rel_l2(&ours, &reference) < 1e-14, "{:?}: forward", (k, s, p));
        let g1 = probe(&ours, 73).backward().unwrap();
        let g2 = probe(&reference, 73).backward().unwrap();
        for v in [&x, &wt] {
            assert!(rel_l2(g1.get(v).unwrap(), g2.get(v).unwrap()) < 1e-12, "{:?}", (k, s, p));
        }
    }
    let x = Tensor::zeros((1, 3, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::zeros((2, 2, 1, 1), DType::F32, &Device::Cpu).unwrap();
    let err = conv2d(&x, &w, 1, 0, &KernelPolicy::candle()).unwrap_err().to_string();
    assert!(err.contains("1x1 conv expects"), "{err}");
}
