//! Image-level AP and F1-max agree with the pixel-level ones (checked against scikit-learn on
//! the shared fixtures) on one-pixel-per-image inputs, ties included.

use ikd_metrics::MetricsError;
use ikd_metrics::{average_precision, f1_max, image_average_precision, image_f1_max, Sample};
use proptest::prelude::*;

proptest! {
    #[test]
    fn image_metrics_equal_pixel_metrics_of_one_pixel_images(
        cases in proptest::collection::vec((0u8..12, any::<bool>()), 2..60)
    ) {
        let scores: Vec<f32> = cases.iter().map(|c| c.0 as f32 / 8.0).collect();
        let mut labels: Vec<bool> = cases.iter().map(|c| c.1).collect();
        // both classes present
        labels[0] = true;
        labels[1] = false;
        let mask: Vec<u8> = labels.iter().map(|&d| u8::from(d)).collect();
        let sample = [Sample::new(&scores, &mask, scores.len(), 1)];
        let s64: Vec<f64> = scores.iter().map(|&s| s as f64).collect();
        let ap = image_average_precision(&s64, &labels).unwrap();
        prop_assert!((ap - average_precision(&sample).unwrap()).abs() < 1e-12);
        let (img, pix) = (image_f1_max(&s64, &labels).unwrap(), f1_max(&sample).unwrap());
        prop_assert!((img.f1 - pix.f1).abs() < 1e-12);
        prop_assert_eq!(img.threshold, pix.threshold as f64);
        prop_assert!((img.precision - pix.precision).abs() < 1e-12);
        prop_assert!((img.recall - pix.recall).abs() < 1e-12);
    }
}

#[test]
fn bad_image_inputs_are_named_errors() {
    assert!(matches!(
        image_f1_max(&[0.1, 0.2], &[false, false]),
        Err(MetricsError::NoDefectiveImage { images: 2 })
    ));
    assert!(matches!(
        image_average_precision(&[0.1, f64::NAN], &[true, false]),
        Err(MetricsError::NonFiniteImageScore { image: 1, .. })
    ));
    assert!(matches!(
        image_average_precision(&[0.1], &[true, false]),
        Err(MetricsError::LengthMismatch { .. })
    ));
    // only defective images: every threshold has precision 1
    assert_eq!(image_average_precision(&[0.3, 0.1], &[true, true]).unwrap(), 1.0);
    assert_eq!(image_f1_max(&[0.3, 0.1], &[true, true]).unwrap().threshold, 0.1);
}
