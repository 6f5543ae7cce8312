//! candle's backward pass as the workspace builds it (`vendor/candle-core`, whose `GradStore`
//! stores a gradient's first contribution instead of adding it to zeros): gradients with fan-in,
//! shared upstream gradients, broadcasting, views and the kernels' custom ops, against their
//! closed forms, exactly.

use candle_core::{DType, Tensor, Var};
use ikd_kernels::conv2d;

use crate::common::{on, rand};

fn var(shape: &[usize], seed: u64) -> Var {
    Var::from_tensor(&rand(shape, seed, DType::F64)).unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

#[test]
fn fan_in_adds_every_contribution() {
    // x reaches the loss by three paths: 2x + 3x + x·x
    let x = var(&[2, 3], 1);
    let loss = ((x.affine(2., 0.).unwrap() + x.affine(3., 0.).unwrap()).unwrap()
        + x.sqr().unwrap())
    .unwrap()
    .sum_all()
    .unwrap();
    let g = loss.backward().unwrap();
    let want: Vec<f64> = values(&x).iter().map(|v| 5. + 2. * v).collect();
    assert_eq!(values(g.get(&x).unwrap()), want);
}

#[test]
fn a_shared_upstream_gradient_is_not_changed_by_a_later_contribution() {
    // y = x + z hands the same gradient to x and to z; x then receives another one (2·x), which
    // must make a new sum, not change what z holds
    let (x, z) = (var(&[4], 2), var(&[4], 3));
    let y = (x.as_tensor() + z.as_tensor()).unwrap();
    let loss = (y.sum_all().unwrap() + x.affine(2., 0.).unwrap().sum_all().unwrap()).unwrap();
    let g = loss.backward().unwrap();
    assert_eq!(values(g.get(&x).unwrap()), vec![3.; 4]);
    assert_eq!(values(g.get(&z).unwrap()), vec![1.; 4]);
}

#[test]
fn gradients_through_broadcasts_and_views_are_contiguous_and_exact() {
    let x = var(&[3, 4], 4);
    let w = var(&[1, 4], 5);
    // a transposed view, a broadcast product and a narrow, each the first gradient of its input
    let t = x.t().unwrap().contiguous().unwrap().sum_keepdim(1).unwrap().sum_all().unwrap();
    let b = x.broadcast_mul(&w).unwrap().sum_all().unwrap();
    let n = x.narrow(1, 1, 2).unwrap().affine(4., 0.).unwrap().sum_all().unwrap();
    let g = ((t + b).unwrap() + n).unwrap().backward().unwrap();
    let (gx, gw) = (g.get(&x).unwrap(), g.get(&w).unwrap());
    assert!(gx.is_contiguous() && gw.is_contiguous());
    let wv = values(&w);
    let want: Vec<f64> = (0..12)
        .map(|i| {
            let col = i % 4;
            1. + wv[col] + if (1..3).contains(&col) { 4. } else { 0. }
        })
        .collect();
    assert_eq!(values(gx), want);
    let xv = values(&x);
    let col_sums: Vec<f64> = (0..4).map(|c| (0..3).map(|r| xv[r * 4 + c]).sum()).collect();
    assert_eq!(values(gw), col_sums);
}

#[test]
fn a_custom_op_used_twice_gets_both_gradients() {
    // one convolution's input reaching the loss through two convolutions (the kernels' custom
    // op) has the sum of the two input gradients, each as the op computes it alone
    let x = var(&[1, 2, 5, 5], 6);
    let (w1, w2) = (rand(&[3, 2, 3, 3], 7, DType::F64), rand(&[3, 2, 3, 3], 8, DType::F64));
    let grad_through = |w: &Tensor| {
        let y = conv2d(&x, w, 1, 1, &on()).unwrap();
        values(y.sum_all().unwrap().backward().unwrap().get(&x).unwrap())
    };
    let (g1, g2) = (grad_through(&w1), grad_through(&w2));
    let y1 = conv2d(&x, &w1, 1, 1, &on()).unwrap().sum_all().unwrap();
    let y2 = conv2d(&x, &w2, 1, 1, &on()).unwrap().sum_all().unwrap();
    let g = (y1 + y2).unwrap().backward().unwrap();
    let want: Vec<f64> = g1.iter().zip(&g2).map(|(a, b)| a + b).collect();
    assert_eq!(values(g.get(&x).unwrap()), want);
}

/// The identity (of a contiguous f64 tensor), whose backward hands back a gradient one row
/// short.
struct ShortGradient;

impl candle_core::CustomOp1 for ShortGradient {
    fn name(&self) -> &'static str {
        "short-gradient"
    }

    fn cpu_fwd(
        &self,
        s: &candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let v = s.as_slice::<f64>()?;
        let v = v[l.start_offset()..l.start_offset() + l.shape().elem_count()].to_vec();
        Ok((candle_core::CpuStorage::F64(v), l.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.narrow(0, 1, grad.dim(0)? - 1)?))
    }
}

#[test]
fn a_first_gradient_of_the_wrong_shape_is_an_error() {
    // added to zeros, the wrong shape failed; stored directly, it must fail the same way
    let x = var(&[3, 2], 9);
    let loss = x.apply_op1(ShortGradient).unwrap().sum_all().unwrap();
    let err = loss.backward().expect_err("a (2, 2) gradient for a (3, 2) tensor");
    assert!(err.to_string().contains("shape mismatch in add"), "{err}");
}
