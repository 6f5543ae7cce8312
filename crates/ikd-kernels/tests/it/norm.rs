//! Training-mode batch norm and the channel affine map of eval mode against candle's ops (the
//! same functions under `KernelPolicy::candle()`) and central finite differences.

use candle_core::{DType, Var};
use ikd_kernels::{batch_norm_train, channel_affine, KernelPolicy};

use crate::common::{check_fd, on, probe, rand, rel_l2};

/// A non-trivial `(gamma, beta)` for `c` channels.
fn params(c: usize, dtype: DType) -> (Var, Var) {
    let v = |seed| Var::from_tensor(&(rand(&[c], seed, dtype) + 0.5).unwrap()).unwrap();
    (v(7), v(8))
}

#[test]
fn train_batch_norm_matches_candle_values_gradients_and_statistics() {
    for &(n, c, h, w) in
        &[(2, 3, 5, 5), (1, 4, 3, 7), (3, 2, 1, 2), (2, 18, 16, 16), (2, 64, 32, 32)]
    {
        for relu in [false, true] {
            for dtype in [DType::F64, DType::F32] {
                let case = format!("{:?} relu {relu} {dtype:?}", (n, c, h, w));
                let (g, b) = params(c, dtype);
                let x = Var::from_tensor(&rand(&[n, c, h, w], 9, dtype)).unwrap();
                let (y1, s1) = batch_norm_train(&x, &g, &b, 1e-5, relu, &on()).unwrap();
                let candle = KernelPolicy::candle();
                let (y2, s2) = batch_norm_train(&x, &g, &b, 1e-5, relu, &candle).unwrap();
                let tol = if dtype == DType::F64 { 1e-10 } else { 2e-5 };
                assert!(rel_l2(&y1, &y2) < tol, "{case}: forward {}", rel_l2(&y1, &y2));
                assert_eq!((s1.count, s2.count), (n * h * w, n * h * w), "{case}");
                let (v1, v2) = (s1.unbiased_var().unwrap(), s2.unbiased_var().unwrap());
                for (a, b, stat) in [(&s1.mean, &s2.mean, "mean"), (&s1.var, &s2.var, "var")]
                    .into_iter()
                    .chain([(&v1, &v2, "unbiased var")])
                {
                    assert_eq!(a.dims(), &[c], "{case}: {stat}");
                    assert!(rel_l2(a, b) < tol, "{case}: {stat} {}", rel_l2(a, b));
                }
                let g1 = probe(&y1, 10).backward().unwrap();
                let g2 = probe(&y2, 10).backward().unwrap();
                let gx = rel_l2(g1.get(&x).unwrap(), g2.get(&x).unwrap());
                assert!(gx < tol * 10., "{case}: input gradient {gx}");
                let gw = rel_l2(g1.get(&g).unwrap(), g2.get(&g).unwrap());
                assert!(gw < tol, "{case}: weight gradient {gw}");
                let gb = rel_l2(g1.get(&b).unwrap(), g2.get(&b).unwrap());
                assert!(gb < tol, "{case}: bias gradient {gb}");
            }
        }
    }
}

#[test]
fn train_batch_norm_gradients_match_finite_differences() {
    for relu in [false, true] {
        let (g, b) = params(3, DType::F64);
        let x = Var::from_tensor(&rand(&[2, 3, 3, 4], 11, DType::F64)).unwrap();
        let y = || batch_norm_train(&x, &g, &b, 1e-5, relu, &on()).unwrap().0;
        let f = || probe(&y(), 12).to_scalar::<f64>().unwrap();
        let grads = probe(&y(), 12).backward().unwrap();
        check_fd(&x, grads.get(&x).unwrap(), f, "input");
        check_fd(&g, grads.get(&g).unwrap(), f, "weight");
        check_fd(&b, grads.get(&b).unwrap(), f, "bias");
    }
}

#[test]
fn train_batch_norm_needs_two_values_per_channel() {
    let x = rand(&[1, 2, 1, 1], 1, DType::F32);
    let (g, b) = params(2, DType::F32);
    for p in [on(), KernelPolicy::candle()] {
        let err = batch_norm_train(&x, &g, &b, 1e-5, false, &p).unwrap_err().to_string();
        assert!(err.contains("more than one value per channel"), "{err}");
    }
}

#[test]
fn eval_batch_norm_and_channel_affine_match_candle() {
    for relu in [false, true] {
        for &(n, c, h, w) in &[(1, 3, 5, 5), (2, 18, 16, 16), (3, 2, 1, 3)] {
            let x = Var::from_tensor(&rand(&[n, c, h, w], 13, DType::F64)).unwrap();
            let a = Var::from_tensor(&rand(&[c], 14, DType::F64)).unwrap();
            let b = Var::from_tensor(&rand(&[c], 15, DType::F64)).unwrap();
            let ours = channel_affine(&x, &a, &b, relu, &on()).unwrap();
            let mut reference = x
                .broadcast_mul(&a.reshape((1, c, 1, 1)).unwrap())
                .unwrap()
                .broadcast_add(&b.reshape((1, c, 1, 1)).unwrap())
                .unwrap();
            if relu {
                reference = reference.relu().unwrap();
            }
            assert!(rel_l2(&ours, &reference) < 1e-14);
            let candle = channel_affine(&x, &a, &b, relu, &KernelPolicy::candle()).unwrap();
            assert!(rel_l2(&candle, &reference) == 0., "relu {relu}: the candle policy");
            let g1 = probe(&ours, 16).backward().unwrap();
            let g2 = probe(&reference, 16).backward().unwrap();
            for v in [&x, &a, &b] {
                assert!(rel_l2(g1.get(v).unwrap(), g2.get(v).unwrap()) < 1e-12, "relu {relu}");
            }
            let f = || {
                probe(&channel_affine(&x, &a, &b, relu, &on()).unwrap(), 16)
                    .to_scalar::<f64>()
                    .unwrap()
            };
            check_fd(&a, g1.get(&a).unwrap(), f, "scale");
        }
    }
}

/// A channel whose mean is large against its spread (as after a convolution of post-ReLU
/// inputs), under an upstream gradient whose magnitudes span six decades (as the IKD loss's,
/// which concentrates on few pixels): the f32 kernel within a few ulp-sums of the f64 one, as
/// candle's ops. Folding the mean into a per-channel constant (`x·a + (b − mean·a)`, forward, or
/// `a·g + b·x + k`, backward) cancels |mean|/std-fold and misses by 1e-4 here.
#[test]
fn train_batch_norm_in_f32_keeps_precision_where_the_mean_dwarfs_the_spread() {
    let (n, c, h, w) = (2, 4, 16, 16);
    for relu in [false, true] {
        for offset in [0., 30., 300.] {
            let case = format!("relu {relu} mean {offset}");
            let x64 = ((rand(&[n, c, h, w], 21, DType::F64) * 0.05).unwrap() + offset).unwrap();
            // the f32 input, and the f64 reference on exactly those values
            let x32 = x64.to_dtype(DType::F32).unwrap();
            let x64 = x32.to_dtype(DType::F64).unwrap();
            // upstream gradient r·10^(−6·u), u uniform in [0, 1): six decades
            let u = ((rand(&[n, c, h, w], 22, DType::F64) + 2.).unwrap() * 0.25).unwrap();
            let scale = (u * (-6. * std::f64::consts::LN_10)).unwrap().exp().unwrap();
            let r = rand(&[n, c, h, w], 23, DType::F64).mul(&scale).unwrap();
            let r32 = r.to_dtype(DType::F32).unwrap();
            let r = r32.to_dtype(DType::F64).unwrap();
            let run = |x: &candle_core::Tensor, r: &candle_core::Tensor, p: &KernelPolicy| {
                let dtype = x.dtype();
                let (g, b) = params(c, dtype);
                let x = Var::from_tensor(x).unwrap();
                let y = batch_norm_train(&x, &g, &b, 1e-5, relu, p).unwrap().0;
                let grads = y.mul(r).unwrap().sum_all().unwrap().backward().unwrap();
                let gx = grads.get(&x).unwrap().clone();
                (y, gx, grads.get(&g).unwrap().clone())
            };
            let (y64, gx64, gg64) = run(&x64, &r, &on());
            for (what, p) in [("kernels", on()), ("candle", KernelPolicy::candle())] {
                let (y, gx, gg) = run(&x32, &r32, &p);
                let (ey, ex, eg) = (rel_l2(&y, &y64), rel_l2(&gx, &gx64), rel_l2(&gg, &gg64));
                eprintln!("{case} {what}: forward {ey:e}, input gradient {ex:e}, gamma {eg:e}");
                if what == "kernels" {
                    assert!(ey < 1e-6, "{case}: forward {ey:e}");
                    assert!(ex < 1e-6, "{case}: input gradient {ex:e}");
                    assert!(eg < 1e-6, "{case}: gamma gradient {eg:e}");
                }
            }
        }
    }
}
