//! Properties: the C×C context-similarity formulation equals the naive K×K one of the published
//! code (value and gradient), alone and inside the full loss.

use candle_core::{DType, Device, Tensor, Var};
use ikd_distill::{context_similarity, l2_normalize, IkdLoss, IkdLossConfig};
use proptest::prelude::*;

use crate::common::{as_tensors, rel_l2, tensor, vars};

/// The published formulation: K×K Gram matrices, mean of the squared differences.
fn naive_context(qt: &Tensor, qs: &Tensor) -> Tensor {
    let gt = qt.matmul(&qt.t().unwrap()).unwrap();
    let gs = qs.matmul(&qs.t().unwrap()).unwrap();
    (gt - gs).unwrap().sqr().unwrap().mean_all().unwrap()
}

fn close(a: f64, b: f64, rtol: f64, atol: f64) -> bool {
    (a - b).abs() <= rtol * b.abs() + atol
}

/// (K, C, qt values, qs values).
fn rows() -> impl Strategy<Value = (usize, usize, Vec<f32>, Vec<f32>)> {
    (1usize..24, 1usize..10).prop_flat_map(|(k, c)| {
        (
            Just(k),
            Just(c),
            prop::collection::vec(-2f32..2f32, k * c),
            prop::collection::vec(-2f32..2f32, k * c),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// In f64 both formulations are exact to rounding: value and gradient w.r.t. both inputs.
    #[test]
    fn cxc_equals_kxk_in_f64((k, c, t, s) in rows()) {
        let qt = Var::from_tensor(&tensor(t, &[k, c]).to_dtype(DType::F64).unwrap()).unwrap();
        let qs = Var::from_tensor(&tensor(s, &[k, c]).to_dtype(DType::F64).unwrap()).unwrap();
        let fast = context_similarity(qt.as_tensor(), qs.as_tensor()).unwrap();
        let slow = naive_context(qt.as_tensor(), qs.as_tensor());
        let (f, n) = (fast.to_scalar::<f64>().unwrap(), slow.to_scalar::<f64>().unwrap());
        prop_assert!(close(f, n, 1e-9, 1e-12), "value {f} vs naive {n}");
        let gf = fast.backward().unwrap();
        let gn = slow.backward().unwrap();
        for v in [&qt, &qs] {
            let e = rel_l2(gf.get(v.as_tensor()).unwrap(), gn.get(v.as_tensor()).unwrap());
            prop_assert!(e <= 1e-9, "gradient relative L2 error {e}");
        }
    }

    /// With f32 inputs the C×C form (accumulated in f64) matches the f32 K×K form of the
    /// published code to f32 precision.
    #[test]
    fn cxc_matches_f32_kxk((k, c, t, s) in rows()) {
        let qt = tensor(t, &[k, c]);
        let qs = Var::from_tensor(&tensor(s, &[k, c])).unwrap();
        let fast = context_similarity(&qt, qs.as_tensor()).unwrap();
        let slow = naive_context(&qt, qs.as_tensor());
        let f = fast.to_scalar::<f64>().unwrap();
        let n = slow.to_scalar::<f32>().unwrap() as f64;
        prop_assert!(close(f, n, 1e-4, 1e-6), "value {f} vs naive {n}");
        let gf = fast.backward().unwrap();
        let gn = slow.backward().unwrap();
        let gf = gf.get(qs.as_tensor()).unwrap();
        let gn = gn.get(qs.as_tensor()).unwrap();
        prop_assert_eq!(gf.dtype(), DType::F32);
        let e = rel_l2(gf, gn);
        prop_assert!(e <= 1e-3 || rel_l2(gn, &gn.zeros_like().unwrap()) < 1e-6, "gradient relative L2 error {e}");
    }

    /// The whole loss, several steps with one state, against a naive transcription of the
    /// published code (masked K×K Gram matrices in f32), for every ablation variant.
    #[test]
    fn loss_equals_naive_published_loss(
        n in 1usize..3, c0 in 1usize..7, c1 in 1usize..7, h in 1usize..5, w in 1usize..5,
        variant in 0usize..4, beta in prop::sample::select(vec![0.0, 0.5, 2.0]),
        seed in any::<u64>(),
    ) {
        check_loss_against_naive(LossCase { n, c0, c1, h, w, variant, beta, seed })?;
    }
}

/// Once found by `loss_equals_naive_published_loss`: one channel per level, β = 0. The student's
/// gradient is zero in exact arithmetic (a 1-channel normalised map is ±1) and both sides are
/// rounding noise of the normalisation's Jacobian, which grows as 1/‖x‖ near zero (a gradient of
/// norm 4e-8 differed by 724× itself). The maps' pixel vectors are now kept away from zero.
#[test]
fn one_channel_beta_zero_gradient_is_rounding_noise() {
    let case = LossCase {
        n: 2,
        c0: 1,
        c1: 1,
        h: 4,
        w: 2,
        variant: 0,
        beta: 0.0,
        seed: 11132637876275627836,
    };
    check_loss_against_naive(case).unwrap();
}

/// One case of the loss property: the maps' shapes, the ablation variant, β and the maps' seed.
#[derive(Debug, Clone, Copy)]
struct LossCase {
    n: usize,
    c0: usize,
    c1: usize,
    h: usize,
    w: usize,
    variant: usize,
    beta: f64,
    seed: u64,
}

/// Pseudo-random maps whose pixel vectors have norms of at least 0.25 (values ±[0.25, 1)): the
/// normalisation's Jacobian is bounded by 4, so rounding noise stays below the absolute floor.
fn map_away_from_zero(seed: u64, shape: &[usize]) -> Tensor {
    let x = crate::common::lcg_map(seed, shape);
    let sign = x.ge(0f32).unwrap().to_dtype(DType::F32).unwrap().affine(2.0, -1.0).unwrap();
    (x.abs().unwrap().affine(0.75, 0.25).unwrap() * sign).unwrap()
}

/// The whole loss, three steps with one state, against [`naive_loss`]: margins to 1e-12, the loss to
/// 1e-4 relative, each student gradient to 1e-3 relative L2 or 1e-5 absolute (where the true
/// gradient is zero: C = 1, or no kept pixel).
fn check_loss_against_naive(case: LossCase) -> Result<(), TestCaseError> {
    let LossCase { n, c0, c1, h, w, variant, beta, seed } = case;
    let cfg = IkdLossConfig {
        beta,
        levels: vec![0, 1],
        weights: vec![1.0, 2.0],
        ..[
            IkdLossConfig::paper(),
            IkdLossConfig::no_context(),
            IkdLossConfig::no_mining(),
            IkdLossConfig::stpm(),
        ][variant]
            .clone()
    };
    let mut loss = IkdLoss::new(cfg.clone()).unwrap();
    let mut margins = vec![0.0; 2];
    for step in 0..3u64 {
        let shapes = [[n, c0, h, w], [n, c1, h, w]];
        let teacher: Vec<Tensor> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| map_away_from_zero(seed ^ (step * 16 + i as u64), s))
            .collect();
        let student: Vec<Tensor> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| map_away_from_zero(seed ^ (step * 16 + 8 + i as u64), s))
            .collect();
        let sv = vars(&student);
        let out = loss.forward(&teacher, &as_tensors(&sv)).unwrap();
        let (naive, naive_margins) = naive_loss(&cfg, &margins, &teacher, &sv);
        margins = naive_margins;
        for (a, b) in out.margins.iter().zip(&margins) {
            prop_assert!(close(*a, *b, 1e-12, 1e-15), "margin {a} vs naive {b}");
        }
        let (f, s) = (
            out.total.to_scalar::<f32>().unwrap() as f64,
            naive.to_scalar::<f32>().unwrap() as f64,
        );
        prop_assert!(close(f, s, 1e-4, 1e-6), "step {step}: loss {f} vs naive {s}");
        let gf = out.total.backward().unwrap();
        let gn = naive.backward().unwrap();
        for v in &sv {
            let a = gf.get(v.as_tensor()).unwrap();
            let b = gn.get(v.as_tensor()).unwrap();
            let zero = b.zeros_like().unwrap();
            let e = rel_l2(a, b);
            let abs = rel_l2(&(a - b).unwrap(), &zero);
            prop_assert!(
                e <= 1e-3 || abs <= 1e-5,
                "step {step}: gradient relative L2 error {e} (|a| {}, |b| {}, |a-b| {abs})",
                rel_l2(a, &zero),
                rel_l2(b, &zero)
            );
        }
    }
    Ok(())
}

/// The published `calculate_loss` transcribed naively (one margin per level, `mean(d)` when no
/// pixel is kept): masks instead of gathers, K×K Gram matrices in the input dtype.
fn naive_loss(
    cfg: &IkdLossConfig,
    margins: &[f64],
    teacher: &[Tensor],
    student: &[Var],
) -> (Tensor, Vec<f64>) {
    let mut total = Tensor::new(0f32, &Device::Cpu).unwrap();
    let mut new_margins = vec![];
    for (i, (&l, &w)) in cfg.levels.iter().zip(&cfg.weights).enumerate() {
        let t = l2_normalize(&teacher[l]).unwrap();
        let s = l2_normalize(student[l].as_tensor()).unwrap();
        let (n, c, h, wd) = t.dims4().unwrap();
        let k = n * h * wd;
        let d = (&t - &s).unwrap().sqr().unwrap().sum(1).unwrap().flatten_all().unwrap();
        let dv = d.to_vec1::<f32>().unwrap();
        let mean = dv.iter().map(|&x| x as f64).sum::<f64>() / k as f64;
        let var = if k > 1 {
            dv.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (k - 1) as f64
        } else {
            0.0
        };
        let (mean, std) = (mean as f32 as f64, var.sqrt() as f32 as f64);
        let m = cfg.alpha * margins[i] + (1.0 - cfg.alpha) * (mean + cfg.beta * std);
        new_margins.push(m);
        let mask: Vec<f32> =
            dv.iter().map(|&x| if !cfg.mining || x >= m as f32 { 1.0 } else { 0.0 }).collect();
        let kept: f32 = mask.iter().sum();
        let level = if kept == 0.0 {
            d.mean_all().unwrap()
        } else {
            let mask = tensor(mask, &[k]);
            let pixel = ((&d * &mask).unwrap().sum_all().unwrap() / kept as f64).unwrap();
            if cfg.uses_context() {
                let rows = |x: &Tensor| {
                    x.permute((0, 2, 3, 1))
                        .unwrap()
                        .reshape((k, c))
                        .unwrap()
                        .broadcast_mul(&mask.reshape((k, 1)).unwrap())
                        .unwrap()
                };
                let (qt, qs) = (rows(&t), rows(&s));
                let gt = qt.matmul(&qt.t().unwrap()).unwrap();
                let gs = qs.matmul(&qs.t().unwrap()).unwrap();
                let ctx = ((gt - gs).unwrap().sqr().unwrap().sum_all().unwrap()
                    / (kept as f64 * kept as f64))
                    .unwrap();
                (pixel + (ctx * cfg.gamma).unwrap()).unwrap()
            } else {
                pixel
            }
        };
        total = (total + (level * w).unwrap()).unwrap();
    }
    let wsum: f64 = cfg.weights.iter().sum();
    ((total / wsum).unwrap(), new_margins)
}
