//! Properties on random inputs (with many ties and extreme values), and agreement with the
//! brute-force references.

use ikd_metrics::{
    evaluate, label_components, Accumulator, Connectivity, CurveDetail, Metrics, MetricsConfig,
    MetricsError, Sample,
};
use proptest::prelude::*;

use crate::reference::{self, Img};

fn score() -> impl Strategy<Value = f32> {
    prop_oneof![
        6 => (0_u8..10).prop_map(|x| f32::from(x) * 0.25 - 1.0),
        1 => any::<f32>().prop_filter("finite", |v| v.is_finite()),
        1 => Just(-0.0_f32),
    ]
}

fn image(density: f64) -> impl Strategy<Value = Img> {
    (1_usize..=9, 1_usize..=9).prop_flat_map(move |(w, h)| {
        (
            prop::collection::vec(score(), w * h),
            prop::collection::vec(prop::bool::weighted(density), w * h),
        )
            .prop_map(move |(s, m)| (s, m.into_iter().map(u8::from).collect(), w, h))
    })
}

fn images() -> impl Strategy<Value = Vec<Img>> {
    prop_oneof![Just(0.15), Just(0.4), Just(0.7)]
        .prop_flat_map(|d| prop::collection::vec(image(d), 1..=5))
        .prop_filter("both pixel classes", |imgs| {
            let m = || imgs.iter().flat_map(|i| i.1.iter());
            m().any(|&v| v != 0) && m().any(|&v| v == 0)
        })
}

fn samples(imgs: &[Img]) -> Vec<Sample<'_>> {
    imgs.iter().map(|(s, m, w, h)| Sample::new(s, m, *w, *h)).collect()
}

fn config() -> MetricsConfig {
    MetricsConfig { image_auroc: None, pro_curve: CurveDetail::Full, ..MetricsConfig::all() }
}

fn run(imgs: &[Img], config: &MetricsConfig) -> Result<Metrics, MetricsError> {
    evaluate(&samples(imgs), config)
}

fn pixel_only() -> MetricsConfig {
    MetricsConfig { image_auroc: None, ikd_pro: None, ..MetricsConfig::all() }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn metrics_are_in_range_and_match_brute_force(imgs in images()) {
        let m = run(&imgs, &pixel_only()).unwrap();
        let auroc = m.pixel_auroc.unwrap();
        prop_assert!((0.0..=1.0).contains(&auroc));
        prop_assert!((auroc - reference::auroc(&imgs)).abs() < 1e-9, "{} {}", auroc, reference::auroc(&imgs));
        for a in &m.au_pro {
            prop_assert!((0.0..=1.0).contains(&a.value));
            let want = reference::au_pro(&imgs, a.limit);
            prop_assert!((a.value - want).abs() < 1e-9, "limit {}: {} vs {}", a.limit, a.value, want);
        }
        let ap = m.average_precision.unwrap();
        prop_assert!((0.0..=1.0).contains(&ap));
        prop_assert!((ap - reference::average_precision(&imgs)).abs() < 1e-9);
        let f1 = m.f1_max.unwrap();
        prop_assert!((f1.f1 - reference::f1(&imgs, None)).abs() < 1e-12);
        prop_assert!((f1.f1 - reference::f1(&imgs, Some(f1.threshold))).abs() < 1e-12);
        let curve = m.pro_curve.unwrap();
        prop_assert_eq!((curve.fpr[0], curve.pro[0]), (0.0, 0.0));
        prop_assert_eq!((*curve.fpr.last().unwrap(), *curve.pro.last().unwrap()), (1.0, 1.0));
        prop_assert!(curve.fpr.windows(2).all(|w| w[0] <= w[1]));
        prop_assert!(curve.pro.windows(2).all(|w| w[0] <= w[1]));
        if m.defective_images > 0 && m.defective_images < m.images {
            let config = MetricsConfig { image_auroc: Some(Default::default()), ..MetricsConfig::none() };
            let image = run(&imgs, &config).unwrap().image_auroc.unwrap();
            prop_assert!((image - reference::image_auroc(&imgs)).abs() < 1e-12);
        }
    }

    #[test]
    fn ikd_pro_matches_brute_force(imgs in images(), steps in prop_oneof![Just(7_usize), Just(200)]) {
        let config = MetricsConfig {
            ikd_pro: Some(ikd_metrics::IkdProConfig { thresholds: steps, max_fpr: 0.3 }),
            ..MetricsConfig::none()
        };
        let got = run(&imgs, &config);
        match reference::ikd_pro(&imgs, steps, 0.3) {
            Some(want) => {
                let got = got.unwrap().ikd_pro.unwrap();
                prop_assert!((got.value - want).abs() < 1e-9, "{} vs {}", got.value, want);
            }
            None => {
                let undefined = matches!(got, Err(MetricsError::IkdProUndefined { .. }));
                prop_assert!(undefined, "{:?}", got);
            }
        }
    }

    #[test]
    fn unchanged_under_strictly_increasing_transform(imgs in images()) {
        let mut distinct: Vec<f32> = imgs.iter().flat_map(|i| i.0.iter().map(|&v| v + 0.0)).collect();
        distinct.sort_by(f32::total_cmp);
        distinct.dedup();
        let f = |v: f32| {
            let r = distinct.binary_search_by(|d| d.total_cmp(&(v + 0.0))).unwrap() as f32;
            (r * r + r).sqrt() * 10.0 - 5.0
        };
        let moved: Vec<Img> = imgs.iter().map(|(s, m, w, h)| (s.iter().map(|&v| f(v)).collect(), m.clone(), *w, *h)).collect();
        let config = MetricsConfig { image_auroc: None, ikd_pro: None, pro_curve: CurveDetail::Full, ..MetricsConfig::all() };
        let (a, b) = (run(&imgs, &config).unwrap(), run(&moved, &config).unwrap());
        prop_assert_eq!(a.pixel_auroc, b.pixel_auroc);
        prop_assert_eq!(&a.au_pro, &b.au_pro);
        prop_assert_eq!(a.average_precision, b.average_precision);
        prop_assert_eq!(a.f1_max.unwrap().f1, b.f1_max.unwrap().f1);
        prop_assert_eq!(a.pro_curve, b.pro_curve);
        if a.defective_images > 0 && a.defective_images < a.images {
            let config = MetricsConfig { image_auroc: Some(Default::default()), ..MetricsConfig::none() };
            prop_assert_eq!(run(&imgs, &config).unwrap().image_auroc, run(&moved, &config).unwrap().image_auroc);
        }
    }

    #[test]
    fn swapping_classes_gives_one_minus_auroc(imgs in images()) {
        let swapped: Vec<Img> = imgs
            .iter()
            .map(|(s, m, w, h)| (s.clone(), m.iter().map(|&v| u8::from(v == 0)).collect(), *w, *h))
            .collect();
        let config = MetricsConfig { pixel_auroc: true, ..MetricsConfig::none() };
        let a = run(&imgs, &config).unwrap().pixel_auroc.unwrap();
        let b = run(&swapped, &config).unwrap().pixel_auroc.unwrap();
        prop_assert!((a + b - 1.0).abs() < 1e-12, "{} + {}", a, b);
    }

    #[test]
    fn invariant_to_image_order(imgs in images(), seed in any::<u64>()) {
        let mut shuffled = imgs.clone();
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let config = MetricsConfig { image_auroc: Some(Default::default()), ..config() };
        prop_assert_eq!(run(&imgs, &config), run(&shuffled, &config));
    }

    #[test]
    fn merge_of_any_split_equals_one_pass(imgs in images(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6)) {
        let config = config();
        let mut one = Accumulator::new(config.clone()).unwrap();
        for (s, m, w, h) in &imgs {
            one.update(s, m, *w, *h).unwrap();
        }
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c.index(imgs.len() + 1)).collect();
        bounds.extend([0, imgs.len()]);
        bounds.sort_unstable();
        let mut parts = Vec::new();
        for w in bounds.windows(2) {
            let mut acc = Accumulator::new(config.clone()).unwrap().with_first_index(w[0]);
            for (s, m, wd, h) in &imgs[w[0]..w[1]] {
                acc.update(s, m, *wd, *h).unwrap();
            }
            parts.push(acc);
        }
        // Merge back to front: order of merging must not matter either.
        let mut merged = Accumulator::new(config).unwrap();
        for acc in parts.into_iter().rev() {
            merged.merge(acc).unwrap();
        }
        prop_assert_eq!(merged.images(), one.images());
        prop_assert_eq!(merged.finish(), one.finish());
    }
}

fn mask() -> impl Strategy<Value = (Vec<u8>, usize, usize)> {
    (1_usize..=24, 1_usize..=24, prop_oneof![Just(0.2), Just(0.45), Just(0.6), Just(0.9)])
        .prop_flat_map(|(w, h, d)| {
            prop::collection::vec(prop::bool::weighted(d), w * h)
                .prop_map(move |m| (m.into_iter().map(u8::from).collect(), w, h))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn labelling_agrees_with_flood_fill((m, w, h) in mask()) {
        for (conn, eight) in [(Connectivity::Four, false), (Connectivity::Eight, true)] {
            let got = label_components(&m, w, h, conn).unwrap();
            let (labels, n) = reference::flood_label(&m, w, h, eight);
            prop_assert_eq!(got.count(), n);
            prop_assert_eq!(got.labels(), labels.as_slice());
            let mut sizes = vec![0_u32; n];
            for &l in &labels {
                if l > 0 {
                    sizes[l as usize - 1] += 1;
                }
            }
            prop_assert_eq!(got.sizes(), sizes.as_slice());
            let bools: Vec<bool> = m.iter().map(|&v| v != 0).collect();
            prop_assert_eq!(label_components(&bools, w, h, conn).unwrap(), got);
        }
    }
}

#[test]
fn region_with_a_hole_holding_another_region() {
    // A ring (one 8-connected region of 16 pixels) around a 3x3 hole holding a 1-pixel region.
    let (w, h) = (7, 7);
    let mut m = vec![0_u8; w * h];
    for y in 1..6 {
        for x in 1..6 {
            if y == 1 || y == 5 || x == 1 || x == 5 {
                m[y * w + x] = 1;
            }
        }
    }
    m[3 * w + 3] = 1;
    let s: Vec<f32> = (0..w * h).map(|i| ((i * 37) % 11) as f32).collect();
    let imgs = vec![(s, m, w, h)];
    let c = label_components(&imgs[0].1, w, h, Connectivity::Eight).unwrap();
    assert_eq!(c.sizes(), &[16, 1]);
    for steps in [5, 200, 2000] {
        let got = ikd_metrics::ikd_pro(
            &samples(&imgs),
            ikd_metrics::IkdProConfig { thresholds: steps, max_fpr: 0.3 },
        )
        .unwrap();
        let want = reference::ikd_pro(&imgs, steps, 0.3).unwrap();
        assert!((got.value - want).abs() < 1e-9, "{steps}: {} vs {want}", got.value);
        // Filled holes make the ring's coverage exceed its own pixels: PRO can pass 1.
        assert!(got.pro.iter().any(|&p| p > 1.0));
    }
}
