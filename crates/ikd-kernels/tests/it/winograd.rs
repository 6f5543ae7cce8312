//! The Winograd paths of 3×3 stride-1 f32 convolutions against f64 references, and what each
//! policy switch changes, on every vector set the CPU has ([`paths`]: AVX-512F and AVX2 + FMA
//! on an AVX-512 machine, AVX2 + FMA alone on an AVX2 one, and the scalar cap, which has no
//! Winograd path).

use candle_core::{DType, Device, Tensor, Var};
use ikd_kernels::{conv2d, KernelPolicy, Simd, WINOGRAD_WEIGHT_GRAD_MIN_SIDE};

use crate::common::{paths, probe, rand, rel_l2, to_vec};

/// The Winograd path of 3×3 stride-1 f32 convolutions (where the CPU has it) against candle's
/// f64 convolution: both lane layouts (tile rows for images at least 31 pixels wide, tiles in
/// order otherwise), odd and non-square sizes, channel counts off the 8-channel groups, and few
/// tiles with many channels (the products split over channel groups); the weight gradient on
/// its Winograd path where the image is at least `WINOGRAD_WEIGHT_GRAD_MIN_SIDE` pixels, summed
/// directly below that.
#[test]
fn winograd_conv3x3_matches_the_f64_reference_values_and_gradients() {
    for policy in paths() {
        let on = || policy;
        let path = policy.path();
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
            let case = format!("{path}: {:?}", (n, c, h, w, o));
            let x64 = Var::from_tensor(&rand(&[n, c, h, w], 31, DType::F64)).unwrap();
            let w64 = Var::from_tensor(&rand(&[o, c, 3, 3], 32, DType::F64)).unwrap();
            let reference = x64.conv2d(&w64, 1, 1, 1, 1).unwrap();
            let g64 = probe(&reference, 33).backward().unwrap();
            let x = Var::from_tensor(&x64.to_dtype(DType::F32).unwrap()).unwrap();
            let wt = Var::from_tensor(&w64.to_dtype(DType::F32).unwrap()).unwrap();
            let ours = conv2d(&x, &wt, 1, 1, &on()).unwrap();
            let f64_of = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
            assert!(rel_l2(&f64_of(&ours), &reference) < 2e-6, "{case}: forward");
            let g = probe(&ours, 33).backward().unwrap();
            for (v, v64, name) in [(&x, &x64, "input"), (&wt, &w64, "weight")] {
                let err = rel_l2(&f64_of(g.get(v).unwrap()), g64.get(v64).unwrap());
                assert!(err < 2e-6, "{case}: {name} gradient {err}");
            }
        }
    }
}

/// The weight gradient of a tap that only meets zero inputs: a channel that is non-zero in its
/// first row only never reaches the bottom row of taps. Summed directly (images under
/// `WINOGRAD_WEIGHT_GRAD_MIN_SIDE`, or the Winograd weight gradient switched off) those entries
/// are exactly zero, as Adam needs them; on the Winograd path they are rounding noise.
#[test]
fn taps_that_only_meet_zeros_get_exact_zero_weight_gradients_below_the_winograd_size() {
    for policy in paths() {
        let on = || policy;
        let path = policy.path();
        let bottom_taps = |side: usize, policy: &KernelPolicy| {
            let mut v = vec![0f32; 2 * side * side];
            for (i, x) in v.iter_mut().enumerate() {
                let (ch, row) = (i / (side * side), i / side % side);
                if ch == 0 || row == 0 {
                    *x = ((i * 7 % 13) as f32 - 6.) / 5.;
                }
            }
            let x =
                Var::from_tensor(&Tensor::from_vec(v, (1, 2, side, side), &Device::Cpu).unwrap())
                    .unwrap();
            let w = Var::from_tensor(&rand(&[3, 2, 3, 3], 61, DType::F32)).unwrap();
            let g = probe(&conv2d(&x, &w, 1, 1, policy).unwrap(), 62).backward().unwrap();
            let dw = g.get(&w).unwrap();
            // input channel 1, taps (2, 0..3)
            let taps = dw.narrow(1, 1, 1).unwrap().narrow(2, 2, 1).unwrap();
            let largest = dw.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            (taps.flatten_all().unwrap().to_vec1::<f32>().unwrap(), largest)
        };
        let small = WINOGRAD_WEIGHT_GRAD_MIN_SIDE - 1;
        let (taps, _) = bottom_taps(small, &on());
        assert!(taps.iter().all(|&t| t == 0.), "{path}, {small}²: {taps:?}");
        let large = WINOGRAD_WEIGHT_GRAD_MIN_SIDE;
        let (taps, largest) = bottom_taps(large, &on());
        assert!(taps.iter().all(|t| t.abs() <= 1e-6 * largest), "{path}, {large}²: {taps:?}");
        if on().effective().winograd_weight_grad {
            // the Winograd weight gradient did run: rounding noise where the direct sum has zeros
            assert!(taps.iter().any(|&t| t != 0.), "{path}, {large}²: {taps:?}");
        }
        let direct = KernelPolicy { winograd_weight_grad: false, ..on() };
        let (taps, _) = bottom_taps(large, &direct);
        assert!(taps.iter().all(|&t| t == 0.), "{path}, {large}², switched off: {taps:?}");
    }
}

#[test]
fn the_winograd_switch_changes_only_the_path() {
    for policy in paths() {
        let on = || policy;
        let path = policy.path();
        let x = rand(&[2, 8, 33, 34], 41, DType::F32);
        let w = rand(&[6, 8, 3, 3], 42, DType::F32);
        let im2col = KernelPolicy { winograd: false, ..on() };
        assert!(!im2col.effective().winograd, "{path}");
        let a = conv2d(&x, &w, 1, 1, &on()).unwrap();
        let b = conv2d(&x, &w, 1, 1, &im2col).unwrap();
        assert!(rel_l2(&a, &b) < 1e-6, "{path}");
        if on().effective().winograd {
            // the two paths round differently: the Winograd one did run
            assert!(rel_l2(&a, &b) > 0., "{path}");
        }
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
    for policy in paths() {
        let on = || policy;
        let path = policy.path();
        if !on().effective().winograd_f43 {
            continue;
        }
        let f23_only = KernelPolicy { winograd_f43: false, ..on() };
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
            let case = format!("{path}: {:?}", (n, c, h, w, o));
            let x = Var::from_tensor(&rand(&[n, c, h, w], 61, DType::F32)).unwrap();
            let wt = Var::from_tensor(&rand(&[o, c, 3, 3], 62, DType::F32)).unwrap();
            let y = conv2d(&x, &wt, 1, 1, &on()).unwrap();
            let (x64, w64) = (x.to_dtype(DType::F64).unwrap(), wt.to_dtype(DType::F64).unwrap());
            let (x64, w64) = (Var::from_tensor(&x64).unwrap(), Var::from_tensor(&w64).unwrap());
            let reference = conv2d(&x64, &w64, 1, 1, &on()).unwrap();
            let err = rel_l2(&y, &reference);
            assert!(err < 1e-5, "{case}: forward {err}");
            let f23 = conv2d(&x, &wt, 1, 1, &f23_only).unwrap();
            let g23 = probe(&f23, 63).backward().unwrap();
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
            let f43 = conv2d(&x, &wt, 1, 1, &on()).unwrap();
            let f23 = conv2d(&x, &wt, 1, 1, &f23_only).unwrap();
            assert_eq!(to_vec(&f43), to_vec(&f23), "{path}, {h}x{w}, {c} → {o} channels");
        }
    }
}

/// Every vector set the CPU has with a Winograd path runs it (AVX2 + FMA forced on an AVX-512
/// machine included), names it in `path()`, and the sets agree: the same transforms and
/// products in the same order, so F(2×2, 3×3) and F(4×4, 3×3) give the same values on both up
/// to the last bits of the fused multiply-adds' association (both lane layouts, both
/// algorithms, forward and both gradients).
#[test]
fn every_vector_set_runs_winograd_and_they_agree() {
    let winograd: Vec<KernelPolicy> =
        paths().into_iter().filter(|p| p.effective().winograd).collect();
    let has_avx2 = Simd::detect() >= Simd::Avx2Fma;
    assert_eq!(winograd.len(), Simd::supported().len() - 1, "every set but scalar");
    assert_eq!(winograd.iter().any(|p| p.effective().simd == Simd::Avx2Fma), has_avx2);
    for p in &winograd {
        eprintln!("cpu has {}: winograd path {}", Simd::detect(), p.path());
        assert_eq!(p.path(), format!("{} winograd-f4x4", p.effective().simd));
        let f23 = KernelPolicy { winograd_f43: false, ..*p };
        assert_eq!(f23.path(), format!("{} winograd-f2x2", p.effective().simd));
    }
    let run = |policy: &KernelPolicy, (n, c, h, w, o): (usize, usize, usize, usize, usize)| {
        let x = Var::from_tensor(&rand(&[n, c, h, w], 71, DType::F32)).unwrap();
        let wt = Var::from_tensor(&rand(&[o, c, 3, 3], 72, DType::F32)).unwrap();
        let y = conv2d(&x, &wt, 1, 1, policy).unwrap();
        let g = probe(&y, 73).backward().unwrap();
        [y, g.get(&x).unwrap().clone(), g.get(&wt).unwrap().clone()]
    };
    // F(4×4, 3×3) (rows of quarters), F(2×2, 3×3) on tile rows and on flat tiles
    for case in [(2, 24, 32, 48, 20), (1, 5, 33, 40, 9), (3, 7, 9, 11, 6)] {
        let all: Vec<[Tensor; 3]> = winograd.iter().map(|p| run(p, case)).collect();
        for (p, r) in winograd.iter().zip(&all).skip(1) {
            for (k, name) in ["forward", "input gradient", "weight gradient"].iter().enumerate() {
                let err = rel_l2(&r[k], &all[0][k]);
                assert!(
                    err < 1e-6,
                    "{} vs {}, {case:?}: {name} {err}",
                    p.path(),
                    winograd[0].path()
                );
            }
        }
    }
}
