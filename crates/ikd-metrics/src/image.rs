//! Image-level average precision and best F1 (with its threshold): the numbers behind an OK/NG
//! decision per image.

use crate::MetricsError;

/// The best F1 over per-image scores, and the threshold reaching it (`score >= threshold` ⇒
/// defective).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageF1Max {
    /// The F1 score.
    pub f1: f64,
    /// The lowest score threshold reaching it.
    pub threshold: f64,
    /// Precision at the threshold.
    pub precision: f64,
    /// Recall at the threshold.
    pub recall: f64,
}

/// Scores and their labels (`what` names them in an error): as many of each, every score finite.
pub(crate) fn check(
    scores: &[f64],
    defective: &[bool],
    what: &'static str,
) -> Result<(), MetricsError> {
    if scores.len() != defective.len() {
        return Err(MetricsError::LengthMismatch {
            what,
            left: scores.len(),
            right: defective.len(),
        });
    }
    if let Some(image) = scores.iter().position(|s| !s.is_finite()) {
        return Err(MetricsError::NonFiniteImageScore { image, value: scores[image].to_string() });
    }
    Ok(())
}

/// One point of the precision-recall sweep: every image scoring `>= threshold` is called
/// defective.
struct Point {
    threshold: f64,
    tp: usize,
    fp: usize,
}

/// The sweep over every distinct score, highest first, after checking the input.
fn sweep(scores: &[f64], defective: &[bool]) -> Result<(Vec<Point>, usize), MetricsError> {
    check(scores, defective, "image scores and labels")?;
    let positives = defective.iter().filter(|&&d| d).count();
    if positives == 0 {
        return Err(MetricsError::NoDefectiveImage { images: scores.len() });
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0, 0);
    let mut points: Vec<Point> = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        if defective[i] {
            tp += 1;
        } else {
            fp += 1;
        }
        // a threshold is complete once every image tied at its score is counted
        let last_of_tie = order.get(k + 1).is_none_or(|&j| scores[j] != scores[i]);
        if last_of_tie {
            points.push(Point { threshold: scores[i], tp, fp });
        }
    }
    Ok((points, positives))
}

/// Average precision of per-image scores, `Σ (Rₖ − Rₖ₋₁)·Pₖ` over the distinct scores
/// (scikit-learn's `average_precision_score`).
///
/// ```
/// use ikd_metrics::image_average_precision;
/// let ap = image_average_precision(&[0.9, 0.8, 0.7, 0.1], &[true, false, true, false])?;
/// assert!((ap - (0.5 * 1.0 + 0.5 * 2.0 / 3.0)).abs() < 1e-12);
/// # Ok::<(), ikd_metrics::MetricsError>(())
/// ```
///
/// # Errors
/// [`MetricsError::LengthMismatch`], [`MetricsError::NonFiniteImageScore`],
/// [`MetricsError::NoDefectiveImage`].
pub fn image_average_precision(scores: &[f64], defective: &[bool]) -> Result<f64, MetricsError> {
    let (points, positives) = sweep(scores, defective)?;
    let mut ap = 0.0;
    let mut last_recall = 0.0;
    for p in &points {
        let recall = p.tp as f64 / positives as f64;
        let precision = p.tp as f64 / (p.tp + p.fp) as f64;
        ap += (recall - last_recall) * precision;
        last_recall = recall;
    }
    Ok(ap)
}

/// The best F1 of per-image scores over every threshold, with the lowest threshold reaching it
/// (as `thresholds[argmax(f1)]` over scikit-learn's `precision_recall_curve`).
///
/// ```
/// use ikd_metrics::image_f1_max;
/// let best = image_f1_max(&[0.9, 0.8, 0.7, 0.1], &[true, false, true, false])?;
/// assert_eq!(best.threshold, 0.7);
/// assert!((best.f1 - 0.8).abs() < 1e-12);
/// # Ok::<(), ikd_metrics::MetricsError>(())
/// ```
///
/// # Errors
/// As [`image_average_precision`].
pub fn image_f1_max(scores: &[f64], defective: &[bool]) -> Result<ImageF1Max, MetricsError> {
    let (points, positives) = sweep(scores, defective)?;
    let mut best: Option<ImageF1Max> = None;
    for p in &points {
        if p.tp == 0 {
            continue;
        }
        let precision = p.tp as f64 / (p.tp + p.fp) as f64;
        let recall = p.tp as f64 / positives as f64;
        // one correctly rounded division of integers: equal F1 values compare equal
        let f1 = (2 * p.tp) as f64 / (2 * p.tp + p.fp + (positives - p.tp)) as f64;
        // thresholds come highest first: `>=` keeps the lowest among equal F1 values
        if best.is_none_or(|b| f1 >= b.f1) {
            best = Some(ImageF1Max { f1, threshold: p.threshold, precision, recall });
        }
    }
    best.ok_or(MetricsError::NoDefectiveImage { images: scores.len() })
}
