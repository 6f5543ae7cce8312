//! `relu(a + b)` and nearest-neighbour upsampling against candle's ops.

use candle_core::{DType, Device, Tensor, Var};
use ikd_kernels::{add_relu, upsample_nearest, KernelPolicy};

use crate::common::{on, probe, rand, rel_l2, to_vec};

#[test]
fn add_relu_matches_candle() {
    for shape in [&[7usize][..], &[2, 3, 64, 64], &[1, 1, 1, 1]] {
        let a = Var::from_tensor(&rand(shape, 18, DType::F64)).unwrap();
        let b = Var::from_tensor(&(rand(shape, 19, DType::F64) - 1.).unwrap()).unwrap();
        let ours = add_relu(&a, &b, &on()).unwrap();
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
    for p in [on(), KernelPolicy::candle()] {
        assert!(add_relu(&a, &b, &p).is_err(), "shapes must agree");
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
        let ours = upsample_nearest(&x, f, &on()).unwrap();
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

/// Each input pixel's gradient is the sum over its block, under both policies (candle's own
/// `upsample_nearest2d` overwrites instead of accumulating).
#[test]
fn nearest_upsample_gradient_accumulates() {
    for p in [on(), KernelPolicy::candle()] {
        let x = Var::from_tensor(&Tensor::ones((1, 2, 3, 3), DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        let w = Tensor::arange(0f32, 72., &Device::Cpu).unwrap().reshape((1, 2, 6, 6)).unwrap();
        let y = upsample_nearest(x.as_tensor(), 2, &p).unwrap();
        let grads = y.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
        let g = to_vec(grads.get(x.as_tensor()).unwrap());
        // x[0,0,0,0] feeds w[0,0,0..2,0..2] = 0 + 1 + 6 + 7
        assert_eq!(g[0], 14., "{p:?}");
        // x[0,1,2,2] feeds w[0,1,4..6,4..6] = 36 + (28+29+34+35)
        assert_eq!(g[17], 4. * 36. + 28. + 29. + 34. + 35., "{p:?}");
    }
}
