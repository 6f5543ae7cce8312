use candle_core::{Device, Tensor, Var};
use ikd_hrnet::{
    interpolation_matrix_align_corners, interpolation_matrix_half_pixel,
    resize_bilinear_align_corners, resize_bilinear_half_pixel,
};
use proptest::prelude::*;

use crate::common::to_vec;

#[test]
fn align_corners_matches_pytorch_values() {
    // F.interpolate(torch.tensor([[[[0., 3.], [6., 9.]]]]), (3, 4), mode="bilinear",
    // align_corners=True): rows 0, 3, 6 offsets; columns 0, 1, 2, 3.
    let x = Tensor::new(&[[[[0f32, 3.], [6., 9.]]]], &Device::Cpu).unwrap();
    let y = resize_bilinear_align_corners(&x, 3, 4).unwrap();
    assert_eq!(to_vec(&y), vec![0., 1., 2., 3., 3., 4., 5., 6., 6., 7., 8., 9.]);
    // 4 -> 1 picks the first pixel (scale 0)
    assert_eq!(interpolation_matrix_align_corners(4, 1), vec![1., 0., 0., 0.]);
}

#[test]
fn half_pixel_matches_pytorch_values() {
    // downscale by 2 = mean of 2x2 blocks (align_corners=False, no antialias)
    let x = Tensor::arange(0f32, 16., &Device::Cpu).unwrap().reshape((1, 1, 4, 4)).unwrap();
    let y = resize_bilinear_half_pixel(&x, 2, 2).unwrap();
    assert_eq!(to_vec(&y), vec![2.5, 4.5, 10.5, 12.5]);
    // upscale 3 -> 5: src = (i + .5) * .6 - .5 = -0.2, 0.4, 1.0, 1.6, 2.2
    let m = interpolation_matrix_half_pixel(3, 5);
    let expect = [[1., 0., 0.], [0.6, 0.4, 0.], [0., 1., 0.], [0., 0.4, 0.6], [0., 0., 1.]];
    for (i, row) in expect.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            assert!((m[i * 3 + j] - v).abs() < 1e-12, "({i},{j}) {} vs {v}", m[i * 3 + j]);
        }
    }
}

#[test]
fn resize_gradients_match_finite_differences() {
    let dev = Device::Cpu;
    let x0 = Tensor::randn(0f64, 1., (2, 3, 4, 5), &dev).unwrap();
    let w = Tensor::randn(0f64, 1., (2, 3, 7, 9), &dev).unwrap();
    for f in [resize_bilinear_align_corners, resize_bilinear_half_pixel] {
        let x = Var::from_tensor(&x0).unwrap();
        let loss = |t: &Tensor| f(t, 7, 9).unwrap().mul(&w).unwrap().sum_all().unwrap();
        let grads = loss(x.as_tensor()).backward().unwrap();
        let g = to_vec(grads.get(x.as_tensor()).unwrap());
        let base = to_vec(&x0);
        for idx in [0, 7, 19, 33, 59, 119] {
            let h = 1e-6;
            let mut p = base.clone();
            p[idx] += h;
            let lp = loss(&Tensor::from_vec(p.clone(), x0.shape(), &dev).unwrap());
            p[idx] -= 2. * h;
            let lm = loss(&Tensor::from_vec(p, x0.shape(), &dev).unwrap());
            let fd = (lp.to_scalar::<f64>().unwrap() - lm.to_scalar::<f64>().unwrap()) / (2. * h);
            assert!((fd - g[idx]).abs() < 1e-6 * (1. + fd.abs()), "{idx}: {fd} vs {}", g[idx]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// Bilinear interpolation reproduces affine functions exactly (align_corners), and every
    /// interpolation matrix row sums to one.
    #[test]
    fn align_corners_reproduces_affine_functions(hi in 1usize..6, wi in 2usize..6, ho in 1usize..9, wo in 1usize..9, a in -3f64..3., b in -3f64..3.) {
        let vals: Vec<f64> = (0..hi * wi).map(|k| a * (k / wi) as f64 + b * (k % wi) as f64).collect();
        let x = Tensor::from_vec(vals, (1, 1, hi, wi), &Device::Cpu).unwrap();
        let y = to_vec(&resize_bilinear_align_corners(&x, ho, wo).unwrap());
        let sh = if ho > 1 { (hi as f64 - 1.) / (ho as f64 - 1.) } else { 0. };
        let sw = if wo > 1 { (wi as f64 - 1.) / (wo as f64 - 1.) } else { 0. };
        for i in 0..ho {
            for j in 0..wo {
                let expect = a * i as f64 * sh + b * j as f64 * sw;
                prop_assert!((y[i * wo + j] - expect).abs() < 1e-9);
            }
        }
        for m in [interpolation_matrix_align_corners(hi, ho), interpolation_matrix_half_pixel(hi, ho)] {
            for r in m.chunks(hi) {
                prop_assert!((r.iter().sum::<f64>() - 1.).abs() < 1e-12);
            }
        }
    }
}
