//! The configuration of the IKD loss and its ablations.

use serde::{Deserialize, Serialize};

use crate::{DistillError, Result};

/// Settings of [`crate::IkdLoss`].
///
/// The defaults ([`IkdLossConfig::paper`]) are those of the paper and of the published code:
/// α = 0.01, β = 2, γ = 1, levels (1, 2) of the four IKD feature maps, weights (1, 2), adaptive
/// hard-sample mining (AHSM) and the context-similarity loss both on.
///
/// The named constructors give the variants of the paper's ablation study:
///
/// | constructor | pixel loss over | context loss |
/// | --- | --- | --- |
/// | [`paper`](Self::paper) | pixels with d ≥ margin | on (γ = 1) |
/// | [`no_context`](Self::no_context) | pixels with d ≥ margin | off |
/// | [`no_mining`](Self::no_mining) | all pixels | on (γ = 1) |
/// | [`stpm`](Self::stpm) | all pixels | off (= mean d, the STPM-style baseline) |
///
/// ```
/// use ikd_distill::IkdLossConfig;
///
/// let cfg = IkdLossConfig::default();
/// assert_eq!(cfg, IkdLossConfig::paper());
/// assert_eq!((cfg.alpha, cfg.beta, cfg.gamma), (0.01, 2.0, 1.0));
/// assert_eq!(cfg.levels, vec![1, 2]);
/// assert!(cfg.mining && cfg.context);
/// // Settings round-trip through JSON, e.g. inside a run's settings file.
/// let json = serde_json::to_string(&cfg).unwrap();
/// assert_eq!(serde_json::from_str::<IkdLossConfig>(&json).unwrap(), cfg);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IkdLossConfig {
    /// Momentum of the margin: m ← α·m + (1 − α)·(mean(d) + β·std(d)). In `[0, 1]`.
    pub alpha: f64,
    /// How many (unbiased) standard deviations above the mean distance the margin sits. Finite.
    pub beta: f64,
    /// Weight of the context-similarity loss in a level's loss (pixel + γ·context). Finite, ≥ 0.
    pub gamma: f64,
    /// Which feature maps the loss uses: indices into the feature slices given to
    /// [`crate::IkdLoss::forward`] (0 = branch x0 … 3 = branch x3). Non-empty, no duplicates.
    pub levels: Vec<usize>,
    /// Weight of each level in the total (total = Σ w·loss / Σ w). One per level, ≥ 0, positive sum.
    pub weights: Vec<f64>,
    /// Adaptive hard-sample mining on (keep pixels with d ≥ margin) or off (keep all pixels).
    /// The margins are updated either way, so that they can be logged.
    pub mining: bool,
    /// Context-similarity loss on or off. Off is the same as γ = 0, without computing it.
    pub context: bool,
}

impl Default for IkdLossConfig {
    /// The paper's settings, [`IkdLossConfig::paper`].
    ///
    /// ```
    /// assert!(ikd_distill::IkdLossConfig::default().mining);
    /// ```
    fn default() -> Self {
        Self::paper()
    }
}

impl IkdLossConfig {
    /// The loss of the paper: AHSM and context similarity on, α 0.01, β 2, γ 1, levels (1, 2)
    /// with weights (1, 2).
    ///
    /// ```
    /// let cfg = ikd_distill::IkdLossConfig::paper();
    /// assert_eq!(cfg.weights, vec![1.0, 2.0]);
    /// ```
    pub fn paper() -> Self {
        Self {
            alpha: 0.01,
            beta: 2.0,
            gamma: 1.0,
            levels: vec![1, 2],
            weights: vec![1.0, 2.0],
            mining: true,
            context: true,
        }
    }

    /// Ablation: the paper's loss without the context-similarity term (pixel loss on the mined
    /// pixels only).
    ///
    /// ```
    /// let cfg = ikd_distill::IkdLossConfig::no_context();
    /// assert!(cfg.mining && !cfg.context);
    /// ```
    pub fn no_context() -> Self {
        Self { context: false, ..Self::paper() }
    }

    /// Ablation: the paper's loss without hard-sample mining (pixel and context loss over all
    /// pixels).
    ///
    /// ```
    /// let cfg = ikd_distill::IkdLossConfig::no_mining();
    /// assert!(!cfg.mining && cfg.context);
    /// ```
    pub fn no_mining() -> Self {
        Self { mining: false, ..Self::paper() }
    }

    /// The plain STPM-style baseline: mean of d over all pixels per level (no mining, no context
    /// loss), levels and weights as in the paper.
    ///
    /// ```
    /// let cfg = ikd_distill::IkdLossConfig::stpm();
    /// assert!(!cfg.mining && !cfg.context);
    /// ```
    pub fn stpm() -> Self {
        Self { mining: false, context: false, ..Self::paper() }
    }

    /// Whether the context-similarity term is computed at all (`context` on and γ ≠ 0).
    ///
    /// ```
    /// use ikd_distill::IkdLossConfig;
    /// assert!(IkdLossConfig::paper().uses_context());
    /// assert!(!IkdLossConfig { gamma: 0.0, ..IkdLossConfig::paper() }.uses_context());
    /// ```
    pub fn uses_context(&self) -> bool {
        self.context && self.gamma != 0.0
    }

    /// Checks that the settings make sense; [`crate::IkdLoss::new`] calls it.
    ///
    /// ```
    /// use ikd_distill::IkdLossConfig;
    /// assert!(IkdLossConfig::paper().validate().is_ok());
    /// assert!(IkdLossConfig { alpha: 1.5, ..IkdLossConfig::paper() }.validate().is_err());
    /// assert!(IkdLossConfig { levels: vec![1, 1], ..IkdLossConfig::paper() }.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(DistillError::Config(msg));
        if !(0.0..=1.0).contains(&self.alpha) {
            return bad(format!("alpha must be in [0, 1], got {}", self.alpha));
        }
        if !self.beta.is_finite() {
            return bad(format!("beta must be finite, got {}", self.beta));
        }
        if !(self.gamma.is_finite() && self.gamma >= 0.0) {
            return bad(format!("gamma must be finite and >= 0, got {}", self.gamma));
        }
        if self.levels.is_empty() {
            return bad("levels is empty".into());
        }
        for (i, l) in self.levels.iter().enumerate() {
            if self.levels[..i].contains(l) {
                return bad(format!("level {l} is listed twice in levels {:?}", self.levels));
            }
        }
        if self.weights.len() != self.levels.len() {
            return bad(format!(
                "{} weights for {} levels (levels {:?}, weights {:?})",
                self.weights.len(),
                self.levels.len(),
                self.levels,
                self.weights
            ));
        }
        if self.weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            return bad(format!("weights must be finite and >= 0, got {:?}", self.weights));
        }
        if self.weights.iter().sum::<f64>() <= 0.0 {
            return bad(format!("weights must have a positive sum, got {:?}", self.weights));
        }
        Ok(())
    }
}
