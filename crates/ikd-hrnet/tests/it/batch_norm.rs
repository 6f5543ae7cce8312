//! `BatchNorm2d` under both kernel policies: train mode (outputs, running statistics,
//! gradients) and eval mode (the affine map of the running statistics). The kernels themselves
//! are tested in `ikd-kernels`.

use candle_core::{DType, Device, ModuleT, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use ikd_hrnet::{BatchNorm2d, KernelPolicy};

use crate::common::{rel_l2, to_vec};

/// Deterministic values in (−2, 2) (as `ikd-kernels`' tests draw them).
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

/// A layer with non-trivial weight and bias, and its variables.
fn bn(c: usize, dtype: DType) -> (BatchNorm2d, VarMap) {
    let varmap = VarMap::new();
    let layer = BatchNorm2d::new(c, VarBuilder::from_varmap(&varmap, dtype, &Device::Cpu)).unwrap();
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
fn train_mode_on_the_kernels_matches_candles_ops_and_running_statistics() {
    for &(n, c, h, w) in &[(2, 3, 5, 5), (3, 2, 1, 2), (2, 18, 16, 16)] {
        for relu in [false, true] {
            for dtype in [DType::F64, DType::F32] {
                let case = format!("{:?} relu {relu} {dtype:?}", (n, c, h, w));
                let (ours, ovars) = bn(c, dtype);
                let (reference, rvars) = bn(c, dtype);
                let x = Var::from_tensor(&rand(&[n, c, h, w], 9, dtype)).unwrap();
                // two steps, so that the second starts from moved running statistics
                let (mut y1, mut y2) = (x.as_tensor().clone(), x.as_tensor().clone());
                for _ in 0..2 {
                    y1 = ours.forward_relu_t(&x, true, relu, &KernelPolicy::default()).unwrap();
                    y2 = reference.forward_relu_t(&x, true, relu, &KernelPolicy::candle()).unwrap();
                }
                let tol = if dtype == DType::F64 { 1e-10 } else { 2e-5 };
                assert!(rel_l2(&y1, &y2) < tol, "{case}: forward {}", rel_l2(&y1, &y2));
                for stat in ["running_mean", "running_var"] {
                    let (a, b) = (var(&ovars, stat), var(&rvars, stat));
                    assert_eq!(a.dtype(), dtype, "{case}: {stat}");
                    assert!(rel_l2(&a, &b) < tol, "{case}: {stat}");
                }
                let g1 = crate::common::probe(&y1).backward().unwrap();
                let g2 = crate::common::probe(&y2).backward().unwrap();
                let gx = rel_l2(g1.get(&x).unwrap(), g2.get(&x).unwrap());
                assert!(gx < tol * 10., "{case}: input gradient {gx}");
                for name in ["weight", "bias"] {
                    let (a, b) = (var(&ovars, name), var(&rvars, name));
                    let e = rel_l2(g1.get(&a).unwrap(), g2.get(&b).unwrap());
                    assert!(e < tol, "{case}: {name} gradient {e}");
                }
            }
        }
    }
}

#[test]
fn running_statistics_follow_pytorchs_update() {
    // running ← 0.9·running + 0.1·batch, with the unbiased batch variance
    let x = Tensor::new(&[[[[1f64, 3.]], [[2., 6.]]]], &Device::Cpu).unwrap(); // (1, 2, 1, 2)
    for p in [KernelPolicy::default(), KernelPolicy::candle()] {
        let (layer, _) = bn(2, DType::F64);
        layer.forward_relu_t(&x, true, false, &p).unwrap();
        let (rm, rv) = (to_vec(&layer.running_mean()), to_vec(&layer.running_var()));
        let expect_m = [0.1 * 2., 0.1 * 4.];
        let expect_v = [0.9 + 0.1 * 2., 0.9 + 0.1 * 8.];
        for k in 0..2 {
            assert!((rm[k] - expect_m[k]).abs() < 1e-12, "{p:?}: {rm:?}");
            assert!((rv[k] - expect_v[k]).abs() < 1e-12, "{p:?}: {rv:?}");
        }
    }
}

#[test]
fn eval_mode_is_the_affine_map_of_the_running_statistics() {
    let (layer, vars) = bn(4, DType::F64);
    let x = rand(&[2, 4, 3, 3], 17, DType::F64);
    let _ = layer.forward_t(&x, true).unwrap(); // move the running statistics
    let c4 = |t: Tensor| t.reshape((1, 4, 1, 1)).unwrap();
    let expected = x
        .broadcast_sub(&c4(layer.running_mean()))
        .unwrap()
        .broadcast_div(&c4((layer.running_var() + 1e-5).unwrap().sqrt().unwrap()))
        .unwrap()
        .broadcast_mul(&c4(var(&vars, "weight").as_tensor().clone()))
        .unwrap()
        .broadcast_add(&c4(var(&vars, "bias").as_tensor().clone()))
        .unwrap();
    for p in [KernelPolicy::default(), KernelPolicy::candle()] {
        let y = layer.forward_relu_t(&x, false, true, &p).unwrap();
        assert!(rel_l2(&y, &expected.relu().unwrap()) < 1e-12, "{p:?}");
    }
    assert!(rel_l2(&layer.forward_t(&x, false).unwrap(), &expected) < 1e-12);
}
