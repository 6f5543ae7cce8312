//! Behaviour of the loss, its ablations, its state and the anomaly map.

use candle_core::{DType, Device, Tensor, Var};
use ikd_distill::{
    anomaly_map, l2_normalize, pixel_distance, DistillError, IkdLoss, IkdLossConfig, IkdLossState,
};

use crate::common::{as_tensors, lcg_map, rel, rel_l2, tensor, vars};

/// Four maps x0..x3 of shape (2, c_l, 6, 6), pseudo-random.
fn maps(seed: u64) -> Vec<Tensor> {
    [4usize, 8, 16, 32]
        .iter()
        .enumerate()
        .map(|(i, &c)| lcg_map(seed * 10 + i as u64, &[2, c, 6, 6]))
        .collect()
}

/// (N=1, C=2, 2×2) maps whose every pixel is the channel one-hot `ch` times `scale`.
fn one_hot(ch: usize, scale: f32) -> Tensor {
    let mut v = vec![0f32; 2 * 4];
    for p in 0..4 {
        v[ch * 4 + p] = scale;
    }
    tensor(v, &[1, 2, 2, 2])
}

fn mean_distance(t: &Tensor, s: &Tensor) -> f64 {
    pixel_distance(t, s)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn no_pixel_over_the_margin_gives_mean_distance_and_its_gradient() {
    let cfg = IkdLossConfig { levels: vec![0], weights: vec![1.0], ..IkdLossConfig::paper() };
    let mut loss = IkdLoss::new(cfg).unwrap();
    // Step 1: s = −t everywhere, d = 4 at every pixel, margin 0.99·4 = 3.96: all kept.
    let out = loss.forward(&[one_hot(0, 1.0)], &[one_hot(0, -3.0)]).unwrap();
    assert_eq!(out.kept, vec![4]);
    assert!(rel(out.margins[0], 0.99 * 4.0) < 1e-12);
    // Step 2: orthogonal, d = 2 everywhere; margin 0.01·3.96 + 0.99·2 = 2.0196 > 2: none kept.
    let s = Var::from_tensor(&one_hot(1, 0.5)).unwrap();
    let out = loss.forward(&[one_hot(0, 1.0)], &[s.as_tensor().clone()]).unwrap();
    assert_eq!(out.kept, vec![0]);
    assert!(rel(out.margins[0], 0.01 * 3.96 + 0.99 * 2.0) < 1e-12);
    assert_eq!(out.context, vec![None]);
    assert!(rel(out.per_level[0], 2.0) < 1e-6);
    let g = out.total.backward().unwrap();
    let g = g.get(s.as_tensor()).unwrap();
    // The gradient of mean(d), the same as the STPM baseline's.
    let s2 = Var::from_tensor(&one_hot(1, 0.5)).unwrap();
    let base = IkdLoss::new(IkdLossConfig {
        levels: vec![0],
        weights: vec![1.0],
        ..IkdLossConfig::stpm()
    })
    .unwrap()
    .forward(&[one_hot(0, 1.0)], &[s2.as_tensor().clone()])
    .unwrap();
    let gb = base.total.backward().unwrap();
    assert!(rel_l2(g, gb.get(s2.as_tensor()).unwrap()) < 1e-6);
    assert!(rel_l2(g, &g.zeros_like().unwrap()) > 0.0);
}

#[test]
fn stpm_baseline_is_the_weighted_mean_distance() {
    let (t, s) = (maps(1), maps(2));
    let out = IkdLoss::new(IkdLossConfig::stpm()).unwrap().forward(&t, &s).unwrap();
    let d1 = mean_distance(&t[1], &s[1]);
    let d2 = mean_distance(&t[2], &s[2]);
    assert!(rel(out.per_level[0], d1) < 1e-12 && rel(out.per_level[1], d2) < 1e-12);
    let total = out.total.to_scalar::<f32>().unwrap() as f64;
    assert!(rel(total, (d1 + 2.0 * d2) / 3.0) < 1e-6);
    assert_eq!(out.kept, out.pixels);
    assert_eq!(out.context, vec![None, None]);
}

#[test]
fn ablations_switch_their_terms() {
    let (t, s) = (maps(3), maps(4));
    let run = |cfg: IkdLossConfig| IkdLoss::new(cfg).unwrap().forward(&t, &s).unwrap();
    let paper = run(IkdLossConfig::paper());
    let no_ctx = run(IkdLossConfig::no_context());
    let no_mine = run(IkdLossConfig::no_mining());
    let gamma0 = run(IkdLossConfig { gamma: 0.0, ..IkdLossConfig::paper() });
    // Mining keeps only the hard pixels: fewer than all, at least one (d ≥ margin < max d here).
    for i in 0..2 {
        assert!(paper.kept[i] > 0 && paper.kept[i] < paper.pixels[i], "{:?}", paper.kept);
        assert!(paper.context[i].unwrap() > 0.0);
        assert!(rel(paper.per_level[i], paper.pixel[i] + paper.context[i].unwrap()) < 1e-12);
    }
    // Without context: the same kept pixels and pixel loss, no context term.
    assert_eq!(no_ctx.kept, paper.kept);
    assert_eq!(no_ctx.pixel, paper.pixel);
    assert_eq!(no_ctx.per_level, no_ctx.pixel);
    assert_eq!(gamma0.per_level, no_ctx.per_level);
    // Without mining: every pixel kept, the margins are still tracked.
    assert_eq!(no_mine.kept, no_mine.pixels);
    assert_eq!(no_mine.margins, paper.margins);
    assert!(no_mine.context.iter().all(|c| c.unwrap() > 0.0));
    for i in 0..2 {
        assert!(rel(no_mine.pixel[i], mean_distance(&t[i + 1], &s[i + 1])) < 1e-12);
    }
}

#[test]
fn gamma_scales_the_context_term() {
    let (t, s) = (maps(5), maps(6));
    let run = |gamma| {
        IkdLoss::new(IkdLossConfig { gamma, ..IkdLossConfig::no_mining() })
            .unwrap()
            .forward(&t, &s)
            .unwrap()
    };
    let (g1, g3) = (run(1.0), run(3.0));
    for i in 0..2 {
        assert_eq!(g1.context[i], g3.context[i]);
        let want = g1.pixel[i] + 3.0 * g1.context[i].unwrap();
        assert!(rel(g3.per_level[i], want) < 1e-12);
    }
}

#[test]
fn gradients_reach_the_student_only() {
    let t = vars(&maps(7));
    let s = vars(&maps(8));
    let out = IkdLoss::new(IkdLossConfig::paper())
        .unwrap()
        .forward(&as_tensors(&t), &as_tensors(&s))
        .unwrap();
    let g = out.total.backward().unwrap();
    for l in 0..4 {
        assert!(g.get(t[l].as_tensor()).is_none(), "teacher level {l} got a gradient");
        assert_eq!(g.get(s[l].as_tensor()).is_some(), l == 1 || l == 2, "student level {l}");
    }
    let map = anomaly_map(&as_tensors(&t), &as_tensors(&s), &[1, 2]).unwrap();
    let g = map.sum_all().unwrap().backward().unwrap();
    assert!(g.get(t[1].as_tensor()).is_none());
}

#[test]
fn margins_follow_the_moving_average_and_restore_from_a_checkpoint() {
    let steps: Vec<(Vec<Tensor>, Vec<Tensor>)> =
        (0..4).map(|k| (maps(20 + k), maps(40 + k))).collect();
    let mut straight = IkdLoss::new(IkdLossConfig::paper()).unwrap();
    let mut outs = vec![];
    for (t, s) in &steps {
        outs.push(straight.forward(t, s).unwrap());
    }
    // m_k = α·m_{k−1} + (1 − α)(mean + β·std), from the distances themselves.
    let mut m = [0.0f64; 2];
    for (k, (t, s)) in steps.iter().enumerate() {
        for (i, l) in [1usize, 2].into_iter().enumerate() {
            let d: Vec<f64> = pixel_distance(&t[l], &s[l])
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec1()
                .unwrap();
            let n = d.len() as f64;
            let mean = d.iter().sum::<f64>() / n;
            let std = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
            m[i] = 0.01 * m[i] + 0.99 * (mean + 2.0 * std);
            assert!(rel(outs[k].margins[i], m[i]) < 1e-6, "step {k} level {l}");
        }
    }
    // Checkpoint after two steps (JSON file and tensor), resume, finish: identical results.
    let mut first = IkdLoss::new(IkdLossConfig::paper()).unwrap();
    for (t, s) in &steps[..2] {
        first.forward(t, s).unwrap();
    }
    let dir = std::env::temp_dir().join(format!("ikd-distill-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.json");
    first.state().save_json(&path).unwrap();
    let restored = IkdLossState::load_json(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(&restored, first.state());
    let via_tensor =
        IkdLossState::from_tensor(&first.state().to_tensor(&Device::Cpu).unwrap()).unwrap();
    assert_eq!(&via_tensor, first.state());
    let mut resumed = IkdLoss::with_state(IkdLossConfig::paper(), restored).unwrap();
    for (k, (t, s)) in steps.iter().enumerate().skip(2) {
        let out = resumed.forward(t, s).unwrap();
        assert_eq!(out.margins, outs[k].margins);
        assert_eq!(out.per_level, outs[k].per_level);
    }
    assert_eq!(resumed.state(), straight.state());
    assert_eq!(resumed.state().steps, 4);
}

#[test]
fn bad_input_is_an_error_and_leaves_the_state_alone() {
    let (t, s) = (maps(9), maps(10));
    let mut loss = IkdLoss::new(IkdLossConfig::paper()).unwrap();
    loss.forward(&t, &s).unwrap();
    let before = loss.state().clone();

    let err = loss.forward(&t[..2], &s[..2]).unwrap_err();
    assert!(
        matches!(err, DistillError::MissingLevel { level: 2, teacher: 2, student: 2 }),
        "{err}"
    );

    let mut s_bad = s.clone();
    s_bad[2] = lcg_map(1, &[2, 16, 6, 5]);
    let err = loss.forward(&t, &s_bad).unwrap_err();
    assert!(err.to_string().contains("level 2") && err.to_string().contains("shape"), "{err}");

    s_bad[2] = s[2].to_dtype(DType::F64).unwrap();
    let err = loss.forward(&t, &s_bad).unwrap_err();
    assert!(err.to_string().contains("dtype"), "{err}");

    s_bad[2] = s[2].flatten_to(1).unwrap();
    let err = loss.forward(&t, &s_bad).unwrap_err();
    assert!(err.to_string().contains("student level 2"), "{err}");

    s_bad[2] = s[2].to_dtype(DType::U32).unwrap();
    assert!(loss.forward(&t, &s_bad).is_err());

    // A NaN in level 2 after level 1 succeeded: error, and the level-1 margin is not committed.
    let mut s_nan = s.clone();
    let mut v = s[2].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    v[5] = f32::NAN;
    s_nan[2] = tensor(v, s[2].dims());
    let err = loss.forward(&t, &s_nan).unwrap_err();
    assert!(matches!(err, DistillError::NonFinite { level: 2, .. }), "{err}");

    assert_eq!(loss.state(), &before);

    let other =
        IkdLossConfig { levels: vec![0, 1, 2], weights: vec![1.0; 3], ..IkdLossConfig::paper() };
    assert!(matches!(
        IkdLoss::with_state(other, before.clone()),
        Err(DistillError::StateMismatch(_))
    ));
    let mut nan_state = before;
    nan_state.margins[0] = f64::NAN;
    assert!(loss.set_state(nan_state).is_err());
}

#[test]
fn invalid_configs_are_rejected() {
    let p = IkdLossConfig::paper;
    for cfg in [
        IkdLossConfig { alpha: -0.1, ..p() },
        IkdLossConfig { beta: f64::NAN, ..p() },
        IkdLossConfig { gamma: -1.0, ..p() },
        IkdLossConfig { levels: vec![], weights: vec![], ..p() },
        IkdLossConfig { weights: vec![1.0, 2.0, 3.0], ..p() },
        IkdLossConfig { weights: vec![0.0, 0.0], ..p() },
        IkdLossConfig { weights: vec![1.0, -1.0], ..p() },
        IkdLossConfig { levels: vec![2, 2], ..p() },
    ] {
        let err = IkdLoss::new(cfg.clone()).unwrap_err();
        assert!(matches!(err, DistillError::Config(_)), "{cfg:?}: {err}");
    }
}

#[test]
fn anomaly_map_is_the_product_of_the_loss_distances() {
    let (t, s) = (maps(11), maps(12));
    let map = anomaly_map(&t, &s, &[1, 2]).unwrap();
    assert_eq!(map.dims(), &[2, 6, 6]);
    // The STPM loss of a single level is the mean of the same d the map is built from.
    for l in [1usize, 2] {
        let single = anomaly_map(&t, &s, &[l]).unwrap();
        let out = IkdLoss::new(IkdLossConfig {
            levels: vec![l],
            weights: vec![1.0],
            ..IkdLossConfig::stpm()
        })
        .unwrap()
        .forward(&t, &s)
        .unwrap();
        let mean =
            single.to_dtype(DType::F64).unwrap().mean_all().unwrap().to_scalar::<f64>().unwrap();
        assert!(rel(out.per_level[0], mean) < 1e-12);
    }
    let prod = (anomaly_map(&t, &s, &[1]).unwrap() * anomaly_map(&t, &s, &[2]).unwrap()).unwrap();
    assert_eq!(rel_l2(&map, &prod), 0.0);
    // Identical maps: zero everywhere.
    let zero = anomaly_map(&t, &t, &[0, 3]).unwrap();
    assert_eq!(zero.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
    // Errors: missing level, levels of different sizes, no level.
    assert!(matches!(anomaly_map(&t, &s, &[4]), Err(DistillError::MissingLevel { level: 4, .. })));
    let mut odd = s.clone();
    odd[2] = lcg_map(3, &[2, 16, 3, 3]);
    let mut odd_t = t.clone();
    odd_t[2] = lcg_map(4, &[2, 16, 3, 3]);
    assert!(anomaly_map(&odd_t, &odd, &[1, 2]).is_err());
    assert!(anomaly_map(&t, &s, &[]).is_err());
}

#[test]
fn normalisation_is_safe_at_zero_pixels() {
    // A student pixel that is exactly zero: F.normalize gives 0 there; gradients stay finite.
    let mut v = lcg_map(13, &[1, 3, 2, 2]).flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for c in 0..3 {
        v[c * 4] = 0.0;
    }
    let s = Var::from_tensor(&tensor(v, &[1, 3, 2, 2])).unwrap();
    let n = l2_normalize(s.as_tensor()).unwrap();
    let nv = n.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!((0..3).all(|c| nv[c * 4] == 0.0));
    let t = lcg_map(14, &[1, 3, 2, 2]);
    let out = IkdLoss::new(IkdLossConfig {
        levels: vec![0],
        weights: vec![1.0],
        ..IkdLossConfig::no_mining()
    })
    .unwrap()
    .forward(&[t], &[s.as_tensor().clone()])
    .unwrap();
    let g = out.total.backward().unwrap();
    let g = g.get(s.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(g.iter().all(|x| x.is_finite()), "{g:?}");
    // Unit vectors stay unit vectors.
    let x = lcg_map(15, &[2, 5, 3, 3]);
    let norms = l2_normalize(&x).unwrap().sqr().unwrap().sum(1).unwrap();
    let err = (norms - 1.0).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(err < 1e-6);
}

#[test]
fn f64_and_half_inputs_work() {
    let (t, s) = (maps(16), maps(17));
    let f32_out = IkdLoss::new(IkdLossConfig::paper()).unwrap().forward(&t, &s).unwrap();
    let to = |m: &[Tensor], dt| m.iter().map(|x| x.to_dtype(dt).unwrap()).collect::<Vec<_>>();
    let f64_out = IkdLoss::new(IkdLossConfig::paper())
        .unwrap()
        .forward(&to(&t, DType::F64), &to(&s, DType::F64))
        .unwrap();
    assert_eq!(f64_out.total.dtype(), DType::F64);
    assert_eq!(f64_out.kept, f32_out.kept);
    for i in 0..2 {
        assert!(rel(f64_out.per_level[i], f32_out.per_level[i]) < 1e-5);
    }
    let bf = IkdLoss::new(IkdLossConfig::paper())
        .unwrap()
        .forward(&to(&t, DType::BF16), &to(&s, DType::BF16))
        .unwrap();
    assert_eq!(bf.total.dtype(), DType::F32);
    assert!(bf.total.to_scalar::<f32>().unwrap().is_finite());
}
