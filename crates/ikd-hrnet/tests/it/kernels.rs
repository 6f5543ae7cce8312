//! The CPU kernels (`ikd_hrnet::kernels`) against candle's own ops and central finite
//! differences: values and gradients, across kernel sizes, strides, paddings, odd and
//! non-square sizes and batch sizes 1–3 (batch 1 splits the matrix products over threads,
//! larger batches split the images).

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use ikd_hrnet::{kernels, BatchNorm2d};

use crate::common::{rel_l2, to_vec};

fn rand(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
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
fn probe(y: &Tensor, seed: u64) -> Tensor {
    let r = rand(y.dims(), seed, y.dtype());
    y.mul(&r).unwrap().sum_all().unwrap()
}

/// Central differences of `f` at a spread of coordinates of `v`, against `grad`.
fn check_fd(v: &Var, grad: &Tensor, f: impl Fn() -> f64, what: &str) {
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
            let ours = kernels::conv2d(&x, &wt, s, p).unwrap();
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
        let f = || probe(&kernels::conv2d(&x, &wt, s, p).unwrap(), 6).to_scalar::<f64>().unwrap();
        let y = kernels::conv2d(&x, &wt, s, p).unwrap();
        assert_eq!(y.dims(), x.conv2d(&wt, p, s, 1, 1).unwrap().dims());
        assert!(rel_l2(&y, &x.conv2d(&wt, p, s, 1, 1).unwrap()) < 1e-12);
        let g = probe(&y, 6).backward().unwrap();
        check_fd(&x, g.get(&x).unwrap(), f, "input");
        check_fd(&wt, g.get(&wt).unwrap(), f, "weight");
    }
}

fn bn(c: usize, dtype: DType) -> (BatchNorm2d, VarMap) {
    let varmap = VarMap::new();
    let layer = BatchNorm2d::new(c, VarBuilder::from_varmap(&varmap, dtype, &Device::Cpu)).unwrap();
    // non-trivial weight and bias
    for (name, var) in varmap.data().lock().unwrap().iter() {
        if name == "weight" || name == "bias" {
            let seed = if name == "weight" { 7 } else { 8 };
            var.set(&(rand(&[c], seed, dtype) + 0.5).unwrap()).unwrap();
        }
    }
    (layer, varmap)
}

fn var(varmap: &VarMap, name: &str) -> Var {
    varmap.data().lock().unwrap()[name].clone()
}

#[test]
fn train_batch_norm_matches_candle_values_gradients_and_running_statistics() {
    for &(n, c, h, w) in
        &[(2, 3, 5, 5), (1, 4, 3, 7), (3, 2, 1, 2), (2, 18, 16, 16), (2, 64, 32, 32)]
    {
        for relu in [false, true] {
            for dtype in [DType::F64, DType::F32] {
                let case = format!("{:?} relu {relu} {dtype:?}", (n, c, h, w));
                let (ours, ovars) = bn(c, dtype);
                let (reference, rvars) = bn(c, dtype);
                let x = Var::from_tensor(&rand(&[n, c, h, w], 9, dtype)).unwrap();
                let y1 = ours.forward_relu_t(&x, true, relu).unwrap();
                let mut y2 = reference.forward_train_reference(&x).unwrap();
                if relu {
                    y2 = y2.relu().unwrap();
                }
                let tol = if dtype == DType::F64 { 1e-10 } else { 2e-5 };
                assert!(rel_l2(&y1, &y2) < tol, "{case}: forward {}", rel_l2(&y1, &y2));
                for stat in ["running_mean", "running_var"] {
                    let (a, b) = (var(&ovars, stat), var(&rvars, stat));
                    assert!(rel_l2(&a, &b) < tol, "{case}: {stat}");
                }
                let g1 = probe(&y1, 10).backward().unwrap();
                let g2 = probe(&y2, 10).backward().unwrap();
                let (w1, b1) = (var(&ovars, "weight"), var(&ovars, "bias"));
                let (w2, b2) = (var(&rvars, "weight"), var(&rvars, "bias"));
                let gx = rel_l2(g1.get(&x).unwrap(), g2.get(&x).unwrap());
                assert!(gx < tol * 10., "{case}: input gradient {gx}");
                let gw = rel_l2(g1.get(&w1).unwrap(), g2.get(&w2).unwrap());
                assert!(gw < tol, "{case}: weight gradient {gw}");
                let gb = rel_l2(g1.get(&b1).unwrap(), g2.get(&b2).unwrap());
                assert!(gb < tol, "{case}: bias gradient {gb}");
            }
        }
    }
}

#[test]
fn train_batch_norm_gradients_match_finite_differences() {
    for relu in [false, true] {
        let (layer, vars) = bn(3, DType::F64);
        let x = Var::from_tensor(&rand(&[2, 3, 3, 4], 11, DType::F64)).unwrap();
        // each evaluation updates the running statistics, which the output does not depend on
        let f = || {
            probe(&layer.forward_relu_t(&x, true, relu).unwrap(), 12).to_scalar::<f64>().unwrap()
        };
        let g = probe(&layer.forward_relu_t(&x, true, relu).unwrap(), 12).backward().unwrap();
        check_fd(&x, g.get(&x).unwrap(), f, "input");
        let w = var(&vars, "weight");
        check_fd(&w, g.get(&w).unwrap(), f, "weight");
        let b = var(&vars, "bias");
        check_fd(&b, g.get(&b).unwrap(), f, "bias");
    }
}

#[test]
fn eval_batch_norm_and_channel_affine_match_candle() {
    for relu in [false, true] {
        for &(n, c, h, w) in &[(1, 3, 5, 5), (2, 18, 16, 16), (3, 2, 1, 3)] {
            let x = Var::from_tensor(&rand(&[n, c, h, w], 13, DType::F64)).unwrap();
            let a = Var::from_tensor(&rand(&[c], 14, DType::F64)).unwrap();
            let b = Var::from_tensor(&rand(&[c], 15, DType::F64)).unwrap();
            let ours = kernels::channel_affine(&x, &a, &b, relu).unwrap();
            let mut reference = x
                .broadcast_mul(&a.reshape((1, c, 1, 1)).unwrap())
                .unwrap()
                .broadcast_add(&b.reshape((1, c, 1, 1)).unwrap())
                .unwrap();
            if relu {
                reference = reference.relu().unwrap();
            }
            assert!(rel_l2(&ours, &reference) < 1e-14);
            let g1 = probe(&ours, 16).backward().unwrap();
            let g2 = probe(&reference, 16).backward().unwrap();
            for v in [&x, &a, &b] {
                assert!(rel_l2(g1.get(v).unwrap(), g2.get(v).unwrap()) < 1e-12, "relu {relu}");
            }
            let f = || {
                probe(&kernels::channel_affine(&x, &a, &b, relu).unwrap(), 16)
                    .to_scalar::<f64>()
                    .unwrap()
            };
            check_fd(&a, g1.get(&a).unwrap(), f, "scale");
        }
    }
    // eval-mode BatchNorm2d is the affine map of its running statistics
    let (layer, vars) = bn(4, DType::F64);
    let x = rand(&[2, 4, 3, 3], 17, DType::F64);
    let _ = layer.forward_relu_t(&x, true, false).unwrap(); // move the running statistics
    let y = layer.forward_relu_t(&x, false, true).unwrap();
    let c4 = |t: Tensor| t.reshape((1, 4, 1, 1)).unwrap();
    let expected = x
        .broadcast_sub(&c4(layer.running_mean()))
        .unwrap()
        .broadcast_div(&c4((layer.running_var() + 1e-5).unwrap().sqrt().unwrap()))
        .unwrap()
        .broadcast_mul(&c4(var(&vars, "weight").as_tensor().clone()))
        .unwrap()
        .broadcast_add(&c4(var(&vars, "bias").as_tensor().clone()))
        .unwrap()
        .relu()
        .unwrap();
    assert!(rel_l2(&y, &expected) < 1e-12);
}

#[test]
fn add_relu_matches_candle() {
    for shape in [&[7usize][..], &[2, 3, 64, 64], &[1, 1, 1, 1]] {
        let a = Var::from_tensor(&rand(shape, 18, DType::F64)).unwrap();
        let b = Var::from_tensor(&(rand(shape, 19, DType::F64) - 1.).unwrap()).unwrap();
        let ours = kernels::add_relu(&a, &b).unwrap();
        let reference = (a.as_tensor() + b.as_tensor()).unwrap().relu().unwrap();
        assert!(rel_l2(&ours, &reference) < 1e-15);
        let g1 = probe(&ours, 20).backward().unwrap();
        let g2 = probe(&reference, 20).backward().unwrap();
        for v in [&a, &b] {
            assert!(rel_l2(g1.get(v).unwrap(), g2.get(v).unwrap()) < 1e-15);
        }
    }
    let a = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
    let b = Tensor::zeros((3, 2), DType::F32, &Device::Cpu).unwrap();
    assert!(kernels::add_relu(&a, &b).is_err(), "shapes must agree");
}

#[test]
fn conv2d_rejects_mismatched_channels() {
    let x = Tensor::zeros((1, 3, 8, 8), DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::zeros((4, 2, 3, 3), DType::F32, &Device::Cpu).unwrap();
    let err = kernels::conv2d(&x, &w, 1, 1).unwrap_err().to_string();
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
                    let ours = kernels::conv2d(&x, &w, s, p).unwrap();
                    let reference = x.conv2d(&w, p, s, 1, 1).unwrap();
                    let case = format!("n {n} h {h} k {k} s {s} p {p}");
                    assert!(rel_l2(&ours, &reference) < 1e-12, "{case}: forward");
                    // candle's conv2d backward fails on some of these geometries (it guesses
                    // the transposed convolution's output padding): finite differences instead
                    let g = probe(&ours, 23).backward().unwrap();
                    let f = || {
                        probe(&kernels::conv2d(&x, &w, s, p).unwrap(), 23)
                            .to_scalar::<f64>()
                            .unwrap()
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

/// The Winograd path of 3×3 stride-1 f32 convolutions (where the CPU has it) against candle's
/// f64 convolution: both lane layouts (tile rows for images at least 31 pixels wide, tiles in
/// order otherwise), odd and non-square sizes, channel counts off the 8-channel groups, and few
/// tiles with many channels (the products split over channel groups); the weight gradient on
/// its Winograd path where the image is at least `WINOGRAD_WEIGHT_GRAD_MIN_SIDE` pixels, summed
/// directly below that.
#[test]
fn winograd_conv3x3_matches_the_f64_reference_values_and_gradients() {
    let cases: &[(usize, usize, usize, usize, usize)] = &[
        (1, 3, 31, 33, 5),
        (2, 4, 32, 32, 8),
        (3, 2, 35, 64, 9),
        (1, 5, 2, 67, 16),
        (2, 17, 7, 9, 3),
        (1, 1, 1, 1, 1),
        (2, 64, 8, 8, 72),
        (2, 256, 4, 4, 24),
        (1, 40, 16, 16, 40),
        (8, 3, 30, 30, 4),
        (2, 96, 16, 17, 80),
    ];
    for &(n, c, h, w, o) in cases {
        let case = format!("{:?}", (n, c, h, w, o));
        let x64 = Var::from_tensor(&rand(&[n, c, h, w], 31, DType::F64)).unwrap();
        let w64 = Var::from_tensor(&rand(&[o, c, 3, 3], 32, DType::F64)).unwrap();
        let reference = x64.conv2d(&w64, 1, 1, 1, 1).unwrap();
        let g64 = probe(&reference, 33).backward().unwrap();
        let x = Var::from_tensor(&x64.to_dtype(DType::F32).unwrap()).unwrap();
        let wt = Var::from_tensor(&w64.to_dtype(DType::F32).unwrap()).unwrap();
        let ours = kernels::conv2d(&x, &wt, 1, 1).unwrap();
        let f64_of = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
        assert!(rel_l2(&f64_of(&ours), &reference) < 2e-6, "{case}: forward");
        let g = probe(&ours, 33).backward().unwrap();
        for (v, v64, name) in [(&x, &x64, "input"), (&wt, &w64, "weight")] {
            let err = rel_l2(&f64_of(g.get(v).unwrap()), g64.get(v64).unwrap());
            assert!(err < 2e-6, "{case}: {name} gradient {err}");
        }
    }
}

/// The weight gradient of a tap that only meets zero inputs: a channel that is non-zero in its
/// first row only never reaches the bottom row of taps. Summed directly (images under
/// `WINOGRAD_WEIGHT_GRAD_MIN_SIDE`, or the Winograd weight gradient switched off) those entries
/// are exactly zero, as Adam needs them; on the Winograd path they are rounding noise.
#[test]
fn taps_that_only_meet_zeros_get_exact_zero_weight_gradients_below_the_winograd_size() {
    let bottom_taps = |side: usize| {
        let mut v = vec![0f32; 2 * side * side];
        for (i, x) in v.iter_mut().enumerate() {
            let (ch, row) = (i / (side * side), i / side % side);
            if ch == 0 || row == 0 {
                *x = ((i * 7 % 13) as f32 - 6.) / 5.;
            }
        }
        let x = Var::from_tensor(&Tensor::from_vec(v, (1, 2, side, side), &Device::Cpu).unwrap())
            .unwrap();
        let w = Var::from_tensor(&rand(&[3, 2, 3, 3], 61, DType::F32)).unwrap();
        let g = probe(&kernels::conv2d(&x, &w, 1, 1).unwrap(), 62).backward().unwrap();
        let dw = g.get(&w).unwrap();
        // input channel 1, taps (2, 0..3)
        let taps = dw.narrow(1, 1, 1).unwrap().narrow(2, 2, 1).unwrap();
        let largest = dw.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        (taps.flatten_all().unwrap().to_vec1::<f32>().unwrap(), largest)
    };
    let _paths = crate::common::switches();
    let small = kernels::WINOGRAD_WEIGHT_GRAD_MIN_SIDE - 1;
    let (taps, _) = bottom_taps(small);
    assert!(taps.iter().all(|&t| t == 0.), "{small}²: {taps:?}");
    let large = kernels::WINOGRAD_WEIGHT_GRAD_MIN_SIDE;
    let (taps, largest) = bottom_taps(large);
    assert!(taps.iter().all(|t| t.abs() <= 1e-6 * largest), "{large}²: {taps:?}");
    kernels::set_winograd_weight_grad(false);
    let (taps, _) = bottom_taps(large);
    kernels::set_winograd_weight_grad(true);
    assert!(taps.iter().all(|&t| t == 0.), "{large}², switched off: {taps:?}");
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
                let ours = kernels::conv2d_affine(&x, &w, s, p, &a, &b, relu).unwrap();
                let conv = kernels::conv2d(&x, &w, s, p).unwrap();
                let reference = kernels::channel_affine(&conv, &a, &b, relu).unwrap();
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

#[test]
fn winograd_switch_changes_only_the_path() {
    let _paths = crate::common::switches();
    let x = rand(&[2, 8, 33, 34], 41, DType::F32);
    let w = rand(&[6, 8, 3, 3], 42, DType::F32);
    let on = kernels::winograd_enabled();
    let a = kernels::conv2d(&x, &w, 1, 1).unwrap();
    kernels::set_winograd(false);
    assert!(!kernels::winograd_enabled());
    let b = kernels::conv2d(&x, &w, 1, 1).unwrap();
    kernels::set_winograd(true);
    assert_eq!(kernels::winograd_enabled(), on);
    assert!(rel_l2(&a, &b) < 1e-6);
    if on {
        // the two paths round differently: the Winograd one did run
        assert!(rel_l2(&a, &b) > 0.);
    }
}

#[test]
fn upsample_nearest_matches_broadcast_reference() {
    for (dims, f) in [
        ([1, 1, 2, 3], 2),
        ([2, 3, 4, 4], 2),
        ([2, 2, 3, 5], 4),
        ([1, 64, 16, 16], 8),
        ([1, 2, 3, 3], 1),
    ] {
        let x = Var::from_tensor(&rand(&dims, 24, DType::F64)).unwrap();
        let ours = kernels::upsample_nearest(&x, f).unwrap();
        let [n, c, h, w] = dims;
        let reference = x
            .reshape((n, c, h, 1, w, 1))
            .unwrap()
            .broadcast_as((n, c, h, f, w, f))
            .unwrap()
            .reshape((n, c, h * f, w * f))
            .unwrap();
        assert_eq!(to_vec(&ours), to_vec(&reference), "{dims:?} x{f}");
        let g1 = probe(&ours, 25).backward().unwrap();
        let g2 = probe(&reference, 25).backward().unwrap();
        assert!(rel_l2(g1.get(&x).unwrap(), g2.get(&x).unwrap()) < 1e-14, "{dims:?} x{f}");
    }
}

/// F(4×4, 3×3) against the f64 direct sum: values, input and weight gradients (all three on
/// that path), on sizes that take it (widths multiples of 16, heights multiples of 4, from 16
/// on, 16 channels or more; channel counts off the multiples of 8 and 16; vectors with 1–3 of
/// their four quarters; few blocks split over channel groups, and many blocks not) — and it
/// leaves smaller images, other widths and heights and fewer channels to F(2×2, 3×3) bit for
/// bit.
#[test]
fn winograd_f43_matches_the_direct_sum() {
    let _paths = crate::common::switches();
    if !kernels::winograd_f43_enabled() {
        return;
    }
    let cases: &[(usize, usize, usize, usize, usize)] = &[
        (2, 17, 32, 32, 19),
        (1, 19, 36, 64, 16),
        (3, 16, 32, 96, 16),
        (1, 16, 40, 32, 17),
        (2, 64, 32, 32, 64),
        (2, 32, 16, 16, 24),
        (1, 20, 20, 48, 16),
        (3, 16, 16, 16, 16),
        (2, 16, 64, 128, 16),
    ];
    for &(n, c, h, w, o) in cases {
        let case = format!("{:?}", (n, c, h, w, o));
        let x = Var::from_tensor(&rand(&[n, c, h, w], 61, DType::F32)).unwrap();
        let wt = Var::from_tensor(&rand(&[o, c, 3, 3], 62, DType::F32)).unwrap();
        let y = kernels::conv2d(&x, &wt, 1, 1).unwrap();
        let (x64, w64) = (x.to_dtype(DType::F64).unwrap(), wt.to_dtype(DType::F64).unwrap());
        let (x64, w64) = (Var::from_tensor(&x64).unwrap(), Var::from_tensor(&w64).unwrap());
        let reference = kernels::conv2d(&x64, &w64, 1, 1).unwrap();
        let err = rel_l2(&y, &reference);
        assert!(err < 1e-5, "{case}: forward {err}");
        kernels::set_winograd_f43(false);
        let f23 = kernels::conv2d(&x, &wt, 1, 1).unwrap();
        let g23 = probe(&f23, 63).backward().unwrap();
        kernels::set_winograd_f43(true);
        assert_ne!(to_vec(&y), to_vec(&f23), "{case}: F(4×4, 3×3) did not run");
        let g = probe(&y, 63).backward().unwrap();
        for (v, name) in [(&x, "input"), (&wt, "weight")] {
            let (a, b) = (to_vec(g.get(v).unwrap()), to_vec(g23.get(v).unwrap()));
            assert_ne!(a, b, "{case}: F(4×4, 3×3) {name} gradient did not run");
        }
        let g64 = probe(&reference, 63).backward().unwrap();
        for (v, v64, name) in [(&x, &x64, "input"), (&wt, &w64, "weight")] {
            let err = rel_l2(g.get(v).unwrap(), g64.get(v64).unwrap());
            assert!(err < 1e-5, "{case}: {name} gradient {err}");
        }
    }
    // a side below 16 pixels, a width off the multiples of 16, a height off the multiples of
    // 4, fewer than 16 input or output channels: F(2×2, 3×3) as before
    for (h, w, c, o) in
        [(12, 32, 16, 16), (32, 40, 16, 16), (30, 32, 16, 16), (16, 16, 6, 16), (32, 32, 16, 5)]
    {
        let x = rand(&[2, c, h, w], 64, DType::F32);
        let wt = rand(&[o, c, 3, 3], 65, DType::F32);
        let on = kernels::conv2d(&x, &wt, 1, 1).unwrap();
        kernels::set_winograd_f43(false);
        let off = kernels::conv2d(&x, &wt, 1, 1).unwrap();
        kernels::set_winograd_f43(true);
        assert_eq!(to_vec(&on), to_vec(&off), "{h}x{w}, {c} → {o} channels");
    }
}
