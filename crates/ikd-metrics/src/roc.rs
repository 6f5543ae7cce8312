//! The ROC curve of scores against binary labels, for plotting beside the AUROC.

use serde::{Deserialize, Serialize};

use crate::MetricsError;

/// A receiver operating characteristic: the false and true positive rates at every distinct score
/// threshold, from (0, 0) (nothing predicted positive) to (1, 1) (everything), ordered by
/// decreasing threshold, so both rates never decrease. Tied scores are one point: the curve runs
/// straight through a tied block, which is how scikit-learn's `roc_auc_score` (and
/// [`image_auroc`](crate::image_auroc)) count ties, so [`area`](Self::area) equals the AUROC.
///
/// ```
/// let c = ikd_metrics::RocCurve { fpr: vec![0.0, 0.0, 1.0], tpr: vec![0.0, 1.0, 1.0] };
/// assert_eq!(c.len(), 3);
/// assert_eq!(c.area(), 1.0);
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RocCurve {
    /// False positive rates.
    pub fpr: Vec<f64>,
    /// True positive rates.
    pub tpr: Vec<f64>,
}

impl RocCurve {
    /// Number of points.
    ///
    /// ```
    /// assert_eq!(ikd_metrics::RocCurve::default().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.fpr.len()
    }

    /// Whether the curve has no point.
    ///
    /// ```
    /// assert!(ikd_metrics::RocCurve::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.fpr.is_empty()
    }

    /// The points as (FPR, TPR) pairs.
    ///
    /// ```
    /// let c = ikd_metrics::roc_curve(&[0.9, 0.1], &[true, false])?;
    /// assert_eq!(c.points().collect::<Vec<_>>(), [(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)]);
    /// # Ok::<(), ikd_metrics::MetricsError>(())
    /// ```
    pub fn points(&self) -> impl ExactSizeIterator<Item = (f64, f64)> + '_ {
        self.fpr.iter().copied().zip(self.tpr.iter().copied())
    }

    /// The area under the curve (trapezoid rule).
    ///
    /// ```
    /// let c = ikd_metrics::roc_curve(&[0.9, 0.4, 0.4, 0.1], &[true, true, false, false])?;
    /// assert_eq!(c.area(), 0.875);
    /// # Ok::<(), ikd_metrics::MetricsError>(())
    /// ```
    pub fn area(&self) -> f64 {
        self.fpr
            .windows(2)
            .zip(self.tpr.windows(2))
            .map(|(x, y)| 0.5 * (y[0] + y[1]) * (x[1] - x[0]))
            .sum()
    }
}

/// The ROC curve of `scores` against `positive` labels (`true` = defective; higher scores = more
/// anomalous): one point per distinct score, plus (0, 0). The scores are typically one per image
/// (the curve whose area is [`image_auroc`](crate::image_auroc)); any scored samples work, e.g. the
/// pixels of a set of maps.
///
/// ```
/// use ikd_metrics::{image_auroc, roc_curve};
///
/// let scores = [0.9, 0.4, 0.4, 0.1];
/// let defective = [true, true, false, false];
/// let c = roc_curve(&scores, &defective)?;
/// assert_eq!(c.fpr, [0.0, 0.0, 0.5, 1.0]);
/// assert_eq!(c.tpr, [0.0, 0.5, 1.0, 1.0]);
/// assert_eq!(c.area(), image_auroc(&scores, &defective)?);
/// # Ok::<(), ikd_metrics::MetricsError>(())
/// ```
///
/// # Errors
/// As [`image_auroc`](crate::image_auroc): [`MetricsError::LengthMismatch`],
/// [`MetricsError::NonFiniteImageScore`] (naming the index of the score in `scores`),
/// [`MetricsError::ImageAurocUndefined`] when one class is missing.
pub fn roc_curve(scores: &[f64], positive: &[bool]) -> Result<RocCurve, MetricsError> {
    crate::image::check(scores, positive, "scores and labels")?;
    let p = positive.iter().filter(|&&b| b).count();
    let n = positive.len() - p;
    if p == 0 || n == 0 {
        return Err(MetricsError::ImageAurocUndefined { images: scores.len(), defective: p });
    }
    let mut order: Vec<(f64, bool)> =
        scores.iter().copied().zip(positive.iter().copied()).collect();
    // Highest score first; -0.0 and 0.0 are one threshold, as they compare equal.
    order.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut curve = RocCurve { fpr: vec![0.0], tpr: vec![0.0] };
    let (mut tp, mut fp) = (0_usize, 0_usize);
    for (k, &(score, pos)) in order.iter().enumerate() {
        if pos {
            tp += 1;
        } else {
            fp += 1;
        }
        if order.get(k + 1).is_none_or(|next| next.0 != score) {
            curve.fpr.push(fp as f64 / n as f64);
            curve.tpr.push(tp as f64 / p as f64);
        }
    }
    Ok(curve)
}
