//! `roc_curve`: its area is the crate's AUROC (pixel and image level) on every case of
//! `shared/fixtures/metrics/` and on random inputs, each point is the rates at its threshold, and
//! bad input is a typed error.

use ikd_metrics::{
    evaluate, image_auroc, roc_curve, MetricsConfig, MetricsError, RocCurve, Sample,
};
use proptest::prelude::*;

use crate::fixtures::{cases, load};
use crate::reference::Img;

/// Every pixel of every image as (score, defect).
fn pixels(imgs: &[Img]) -> (Vec<f64>, Vec<bool>) {
    imgs.iter()
        .flat_map(|(s, m, ..)| s.iter().zip(m).map(|(&s, &m)| (f64::from(s), m != 0)))
        .unzip()
}

/// Each image's maximum score and whether it has a defect pixel.
fn images(imgs: &[Img]) -> (Vec<f64>, Vec<bool>) {
    imgs.iter()
        .map(|(s, m, ..)| {
            (
                f64::from(s.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b))),
                m.iter().any(|&v| v != 0),
            )
        })
        .unzip()
}

/// The curve runs from (0, 0) to (1, 1) without going back, with one point per distinct score
/// after (0, 0), and each point is the share of each class scored at least its threshold.
fn check_shape(c: &RocCurve, scores: &[f64], positive: &[bool]) -> Result<(), String> {
    let mut distinct: Vec<f64> = scores.iter().map(|&s| s + 0.0).collect();
    distinct.sort_by(|a, b| b.total_cmp(a));
    distinct.dedup();
    if c.len() != distinct.len() + 1 || c.tpr.len() != c.len() {
        return Err(format!("{} points for {} distinct scores", c.len(), distinct.len()));
    }
    if c.points().next() != Some((0.0, 0.0)) || c.points().last() != Some((1.0, 1.0)) {
        return Err(format!("ends {:?} .. {:?}", c.points().next(), c.points().last()));
    }
    let p = positive.iter().filter(|&&b| b).count() as f64;
    let n = positive.len() as f64 - p;
    // the counts at or above each threshold, by one sweep down the sorted scores (the fixtures
    // have too many pixels to count again for each threshold)
    let mut sorted: Vec<(f64, bool)> =
        scores.iter().map(|&s| s + 0.0).zip(positive.iter().copied()).collect();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut i, mut above_neg, mut above_pos) = (0, 0usize, 0usize);
    for (k, t) in distinct.iter().enumerate() {
        while i < sorted.len() && sorted[i].0 >= *t {
            if sorted[i].1 {
                above_pos += 1;
            } else {
                above_neg += 1;
            }
            i += 1;
        }
        let want = (above_neg as f64 / n, above_pos as f64 / p);
        if (c.fpr[k + 1], c.tpr[k + 1]) != want {
            return Err(format!(
                "point {} at threshold {t}: {:?}, not {want:?}",
                k + 1,
                (c.fpr[k + 1], c.tpr[k + 1])
            ));
        }
    }
    Ok(())
}

#[test]
fn the_area_is_the_auroc_of_every_fixture_case() {
    let cases = cases();
    assert!(cases.len() >= 3, "expected the metrics fixtures");
    for (name, expected) in cases {
        let imgs = load(&name);
        let samples: Vec<Sample<'_>> =
            imgs.iter().map(|(s, m, w, h)| Sample::new(s, m, *w, *h)).collect();
        let m = evaluate(&samples, &MetricsConfig::default()).unwrap();
        let want = |k: &str| expected[k].as_f64().unwrap_or_else(|| panic!("{name}: {k}"));

        let (scores, defect) = pixels(&imgs);
        let roc = roc_curve(&scores, &defect).unwrap();
        check_shape(&roc, &scores, &defect).unwrap_or_else(|e| panic!("{name}, pixels: {e}"));
        let area = roc.area();
        let crate_auroc = m.pixel_auroc.unwrap();
        assert!(
            (area - crate_auroc).abs() < 1e-12,
            "{name}: pixel ROC area {area} vs AUROC {crate_auroc}"
        );
        assert!(
            (area - want("pixel_auroc")).abs() < 1e-9,
            "{name}: pixel ROC area vs scikit-learn"
        );

        let (scores, defective) = images(&imgs);
        let roc = roc_curve(&scores, &defective).unwrap();
        check_shape(&roc, &scores, &defective).unwrap_or_else(|e| panic!("{name}, images: {e}"));
        let area = roc.area();
        assert!((area - m.image_auroc.unwrap()).abs() < 1e-12, "{name}: image ROC area {area}");
        assert!((area - image_auroc(&scores, &defective).unwrap()).abs() < 1e-12, "{name}");
        assert!(
            (area - want("image_auroc_max")).abs() < 1e-9,
            "{name}: image ROC area vs scikit-learn"
        );
    }
}

#[test]
fn ties_make_one_diagonal_step_and_negative_zero_is_zero() {
    let c = roc_curve(&[1.0, 1.0, 0.0, -0.0], &[true, false, true, false]).unwrap();
    assert_eq!(c.points().collect::<Vec<_>>(), [(0.0, 0.0), (0.5, 0.5), (1.0, 1.0)]);
    assert_eq!(c.area(), 0.5);
    let perfect = roc_curve(&[0.9, 0.8, 0.1, 0.2], &[true, true, false, false]).unwrap();
    assert_eq!(perfect.fpr, [0.0, 0.0, 0.0, 0.5, 1.0]);
    assert_eq!(perfect.tpr, [0.0, 0.5, 1.0, 1.0, 1.0]);
    assert_eq!(perfect.area(), 1.0);
}

#[test]
fn bad_input_is_a_typed_error() {
    assert_eq!(
        roc_curve(&[0.1, 0.2], &[true]),
        Err(MetricsError::LengthMismatch { what: "scores and labels", left: 2, right: 1 })
    );
    assert_eq!(
        roc_curve(&[0.1, f64::NAN], &[true, false]),
        Err(MetricsError::NonFiniteImageScore { image: 1, value: "NaN".into() })
    );
    assert_eq!(
        roc_curve(&[0.1, 0.2], &[true, true]),
        Err(MetricsError::ImageAurocUndefined { images: 2, defective: 2 })
    );
    assert_eq!(
        roc_curve(&[], &[]),
        Err(MetricsError::ImageAurocUndefined { images: 0, defective: 0 })
    );
}

fn labelled_scores() -> impl Strategy<Value = (Vec<f64>, Vec<bool>)> {
    let score = prop_oneof![
        6 => (0_u8..8).prop_map(|x| f64::from(x) * 0.25 - 1.0),
        1 => -1e6_f64..1e6,
        1 => Just(-0.0_f64),
    ];
    prop::collection::vec((score, any::<bool>()), 2..60)
        .prop_filter("both classes", |v| v.iter().any(|x| x.1) && v.iter().any(|x| !x.1))
        .prop_map(|v| v.into_iter().unzip())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_curves_have_the_auroc_as_area((scores, positive) in labelled_scores()) {
        let c = roc_curve(&scores, &positive).unwrap();
        if let Err(e) = check_shape(&c, &scores, &positive) {
            prop_assert!(false, "{}", e);
        }
        let auroc = image_auroc(&scores, &positive).unwrap();
        prop_assert!((c.area() - auroc).abs() < 1e-12, "{} vs {}", c.area(), auroc);
    }
}
