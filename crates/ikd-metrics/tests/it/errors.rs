//! Every typed error, with the image it names.

use ikd_metrics::{
    evaluate, image_auroc, label_components, Accumulator, Connectivity, IkdProConfig,
    MetricsConfig, MetricsError, Sample,
};

fn good() -> (Vec<f32>, Vec<u8>) {
    (vec![0.9, 0.1, 0.2, 0.3], vec![1, 0, 0, 0])
}

#[test]
fn size_mismatch_names_the_image() {
    let (s, m) = good();
    let short = vec![0_u8; 3];
    let samples =
        [Sample::new(&s, &m, 2, 2), Sample::new(&s, &m, 2, 2), Sample::new(&s, &short, 2, 2)];
    let err = evaluate(&samples, &MetricsConfig::default()).unwrap_err();
    assert_eq!(
        err,
        MetricsError::SizeMismatch {
            image: 2,
            width: 2,
            height: 2,
            expected: 4,
            scores: 4,
            mask: 3
        }
    );
    let samples = [Sample::new(&s, &m, 3, 2)];
    assert!(matches!(
        evaluate(&samples, &MetricsConfig::default()),
        Err(MetricsError::SizeMismatch { image: 0, .. })
    ));
    let mut acc = Accumulator::new(MetricsConfig::default()).unwrap();
    let err = acc.update(&s, &m, usize::MAX, 2).unwrap_err();
    assert!(
        matches!(err, MetricsError::SizeMismatch { image: 0, expected: usize::MAX, .. }),
        "{err}"
    );
}

#[test]
fn non_finite_scores_name_image_and_pixel() {
    let (s, m) = good();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut b = s.clone();
        b[3] = bad;
        let samples = [Sample::new(&s, &m, 2, 2), Sample::new(&b, &m, 2, 2)];
        let err = evaluate(&samples, &MetricsConfig::default()).unwrap_err();
        assert_eq!(
            err,
            MetricsError::NonFiniteScore { image: 1, x: 1, y: 1, value: bad.to_string() }
        );
        assert!(err.to_string().contains("image 1"), "{err}");
    }
    // The accumulator is unchanged by the failed update.
    let mut acc = Accumulator::new(MetricsConfig::default()).unwrap();
    acc.update(&s, &m, 2, 2).unwrap();
    let before = Accumulator::new(MetricsConfig::default()).and_then(|mut a| {
        a.update(&s, &m, 2, 2)?;
        a.update(&[0.0, 0.1, 0.4, 0.2], &[0_u8; 4], 2, 2)?;
        a.finish()
    });
    assert!(acc.update(&[0.5, f32::NAN, 0.0, 0.0], &m, 2, 2).is_err());
    acc.update(&[0.0, 0.1, 0.4, 0.2], &[0_u8; 4], 2, 2).unwrap();
    assert_eq!(acc.finish(), before);
}

#[test]
fn empty_image() {
    let samples: [Sample<'_>; 1] = [Sample::new(&[], &[], 0, 5)];
    assert_eq!(
        evaluate(&samples, &MetricsConfig::default()).unwrap_err(),
        MetricsError::EmptyImage { image: 0, width: 0, height: 5 }
    );
}

#[test]
fn no_defect_pixel_overall() {
    let s = [0.1_f32, 0.2];
    let m = [0_u8, 0];
    let samples = [Sample::new(&s, &m, 2, 1), Sample::new(&s, &m, 1, 2)];
    let config = MetricsConfig { image_auroc: None, ..MetricsConfig::default() };
    assert_eq!(evaluate(&samples, &config).unwrap_err(), MetricsError::NoDefectPixel { images: 2 });
}

#[test]
fn no_defect_free_pixel_overall() {
    let s = [0.1_f32, 0.2];
    let m = [true, true];
    let samples = [Sample::new(&s, &m, 2, 1)];
    let config = MetricsConfig { image_auroc: None, ..MetricsConfig::default() };
    assert_eq!(
        evaluate(&samples, &config).unwrap_err(),
        MetricsError::NoDefectFreePixel { images: 1 }
    );
}

#[test]
fn no_images() {
    let samples: [Sample<'_>; 0] = [];
    assert_eq!(evaluate(&samples, &MetricsConfig::default()).unwrap_err(), MetricsError::NoImages);
}

#[test]
fn image_auroc_needs_both_classes() {
    let (s, m) = good();
    let samples = [Sample::new(&s, &m, 2, 2)];
    assert_eq!(
        evaluate(&samples, &MetricsConfig::default()).unwrap_err(),
        MetricsError::ImageAurocUndefined { images: 1, defective: 1 }
    );
    // Without image AUROC the same input is fine.
    let config = MetricsConfig { image_auroc: None, ..MetricsConfig::default() };
    assert_eq!(evaluate(&samples, &config).unwrap().pixel_auroc, Some(1.0));
    assert_eq!(
        image_auroc(&[0.1, 0.2], &[false, false]).unwrap_err(),
        MetricsError::ImageAurocUndefined { images: 2, defective: 0 }
    );
    assert_eq!(
        image_auroc(&[0.1, f64::NAN], &[false, true]).unwrap_err(),
        MetricsError::NonFiniteImageScore { image: 1, value: "NaN".into() }
    );
    assert!(matches!(
        image_auroc(&[0.1], &[false, true]),
        Err(MetricsError::LengthMismatch { left: 1, right: 2, .. })
    ));
}

#[test]
fn invalid_configurations() {
    for limits in [vec![0.0], vec![1.5], vec![f64::NAN], vec![-0.3]] {
        let c = MetricsConfig { au_pro_limits: limits, ..MetricsConfig::default() };
        assert!(matches!(Accumulator::new(c), Err(MetricsError::InvalidConfig(_))));
    }
    let c = MetricsConfig {
        ikd_pro: Some(IkdProConfig { thresholds: 0, max_fpr: 0.3 }),
        ..MetricsConfig::default()
    };
    assert!(matches!(Accumulator::new(c), Err(MetricsError::InvalidConfig(_))));
    let c = MetricsConfig {
        ikd_pro: Some(IkdProConfig { thresholds: 10, max_fpr: 0.0 }),
        ..MetricsConfig::default()
    };
    assert!(matches!(Accumulator::new(c), Err(MetricsError::InvalidConfig(_))));
    let c = MetricsConfig {
        pro_curve: ikd_metrics::CurveDetail::Sampled(0),
        ..MetricsConfig::default()
    };
    assert!(matches!(Accumulator::new(c), Err(MetricsError::InvalidConfig(_))));
}

#[test]
fn merge_needs_equal_configurations() {
    let mut a = Accumulator::new(MetricsConfig::default()).unwrap();
    let b = Accumulator::new(MetricsConfig::all()).unwrap();
    assert_eq!(a.merge(b).unwrap_err(), MetricsError::ConfigMismatch);
}

#[test]
fn ikd_pro_undefined_when_every_kept_fpr_is_equal() {
    // Perfect separation with every defect-free pixel at the minimum: FPR is 0 at all thresholds.
    let s = [1.0_f32, 0.0, 0.0, 0.0];
    let m = [1_u8, 0, 0, 0];
    let err =
        ikd_metrics::ikd_pro(&[Sample::new(&s, &m, 2, 2)], IkdProConfig::default()).unwrap_err();
    assert_eq!(err, MetricsError::IkdProUndefined { kept: 200, max_fpr: 0.3, fpr: 0.0 });
}

#[test]
fn label_size_mismatch() {
    assert_eq!(
        label_components(&[0_u8; 5], 2, 3, Connectivity::Four).unwrap_err(),
        MetricsError::MaskSizeMismatch { width: 2, height: 3, expected: 6, len: 5 }
    );
}

#[test]
fn an_image_refused_for_a_non_finite_score_leaves_no_pixel_behind() {
    // The score is checked while the pixels are bucketed; a refused image's pixels are taken
    // back, so the result is the one without it.
    let config = MetricsConfig { ikd_pro: Some(IkdProConfig::default()), ..MetricsConfig::all() };
    let a: Vec<f32> = (0..64).map(|i| (i * 37 % 64) as f32 / 64.0).collect();
    let b: Vec<f32> = (0..64).map(|i| (i * 11 % 64) as f32 / 80.0).collect();
    let mut mask = vec![0_u8; 64];
    for i in [9, 10, 17, 18, 19, 26, 45] {
        mask[i] = 1;
    }
    let mut clean = Accumulator::new(config.clone()).unwrap();
    clean.update(&a, &mask, 8, 8).unwrap();
    clean.update(&b, &[0_u8; 64], 8, 8).unwrap();
    let mut refused = Accumulator::new(config).unwrap();
    refused.update(&a, &mask, 8, 8).unwrap();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        for at in [0, 18, 63] {
            let mut c = b.clone();
            c[at] = bad;
            let err = refused.update(&c, &mask, 8, 8).unwrap_err();
            assert!(
                matches!(err, MetricsError::NonFiniteScore { image: 1, x, y, .. } if (x, y) == (at % 8, at / 8)),
                "{err}"
            );
        }
    }
    refused.update(&b, &[0_u8; 64], 8, 8).unwrap();
    let (clean, refused) = (clean.finish().unwrap(), refused.finish().unwrap());
    assert_eq!(serde_json::to_string(&clean).unwrap(), serde_json::to_string(&refused).unwrap());
}
