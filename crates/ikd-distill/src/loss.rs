//! The IKD loss with its training state (the AHSM margins).

use std::path::Path;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::ops::{context_similarity, normalized_distance};
use crate::{DistillError, IkdLossConfig, Result};

/// The training state of [`IkdLoss`]: one AHSM margin per configured level (f64, starting at 0)
/// and the number of steps taken. Checkpoint it with the model and restore it with
/// [`IkdLoss::with_state`] or [`IkdLoss::set_state`]; it serialises with serde (JSON via
/// [`save_json`](Self::save_json)/[`load_json`](Self::load_json)) or as a tensor
/// ([`to_tensor`](Self::to_tensor)/[`from_tensor`](Self::from_tensor)).
///
/// ```
/// use ikd_distill::{IkdLossConfig, IkdLossState};
/// let state = IkdLossState::new(&IkdLossConfig::paper());
/// assert_eq!(state.margins, vec![0.0, 0.0]);
/// let json = serde_json::to_string(&state).unwrap();
/// assert_eq!(serde_json::from_str::<IkdLossState>(&json).unwrap(), state);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IkdLossState {
    /// The levels the margins belong to (a copy of the config's, checked on restore).
    pub levels: Vec<usize>,
    /// The AHSM margin of each level, in the order of `levels`.
    pub margins: Vec<f64>,
    /// How many successful [`IkdLoss::forward`] calls produced these margins.
    pub steps: u64,
}

impl IkdLossState {
    /// The initial state for a config: every margin 0, no step taken.
    ///
    /// ```
    /// let s = ikd_distill::IkdLossState::new(&ikd_distill::IkdLossConfig::paper());
    /// assert_eq!((s.levels.clone(), s.steps), (vec![1, 2], 0));
    /// ```
    pub fn new(cfg: &IkdLossConfig) -> Self {
        Self { levels: cfg.levels.clone(), margins: vec![0.0; cfg.levels.len()], steps: 0 }
    }

    /// Checks that this state can drive a loss with `cfg` (same levels, finite margins).
    ///
    /// ```
    /// use ikd_distill::{IkdLossConfig, IkdLossState};
    /// let s = IkdLossState::new(&IkdLossConfig::paper());
    /// assert!(s.check(&IkdLossConfig::paper()).is_ok());
    /// let other = IkdLossConfig { levels: vec![0], weights: vec![1.0], ..IkdLossConfig::paper() };
    /// assert!(s.check(&other).is_err());
    /// ```
    pub fn check(&self, cfg: &IkdLossConfig) -> Result<()> {
        if self.levels != cfg.levels {
            return Err(DistillError::StateMismatch(format!(
                "state is for levels {:?}, config has levels {:?}",
                self.levels, cfg.levels
            )));
        }
        if self.margins.len() != self.levels.len() {
            return Err(DistillError::StateMismatch(format!(
                "{} margins for {} levels",
                self.margins.len(),
                self.levels.len()
            )));
        }
        if let Some(m) = self.margins.iter().find(|m| !m.is_finite()) {
            return Err(DistillError::StateMismatch(format!(
                "margin {m} is not finite (margins {:?})",
                self.margins
            )));
        }
        Ok(())
    }

    /// The state as a tensor for a checkpoint: F64 of shape (2·L + 1,) holding the L levels (as
    /// floats), the L margins and the step count.
    ///
    /// ```
    /// use ikd_distill::{IkdLossConfig, IkdLossState};
    /// let mut s = IkdLossState::new(&IkdLossConfig::paper());
    /// s.margins = vec![0.25, 0.5];
    /// s.steps = 7;
    /// let t = s.to_tensor(&candle_core::Device::Cpu)?;
    /// assert_eq!(t.to_vec1::<f64>()?, vec![1.0, 2.0, 0.25, 0.5, 7.0]);
    /// assert_eq!(IkdLossState::from_tensor(&t)?, s);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_tensor(&self, device: &candle_core::Device) -> Result<Tensor> {
        let mut v: Vec<f64> = self.levels.iter().map(|&l| l as f64).collect();
        v.extend_from_slice(&self.margins);
        v.push(self.steps as f64);
        let n = v.len();
        Ok(Tensor::from_vec(v, n, device)?)
    }

    /// Reads a state written by [`to_tensor`](Self::to_tensor).
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// let bad = Tensor::new(&[1.0f64, 2.0], &Device::Cpu)?;
    /// assert!(ikd_distill::IkdLossState::from_tensor(&bad).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_tensor(t: &Tensor) -> Result<Self> {
        let bad = |msg: String| DistillError::Input { what: "IKD loss state tensor".into(), msg };
        if t.rank() != 1 || t.dims()[0].is_multiple_of(2) {
            return Err(bad(format!(
                "expected a 1-D tensor of odd length 2·levels + 1, got shape {:?}",
                t.dims()
            )));
        }
        let v = t.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let l = (v.len() - 1) / 2;
        let as_count = |x: f64, what: &str| -> Result<u64> {
            if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x < 2f64.powi(53) {
                Ok(x as u64)
            } else {
                Err(bad(format!("{what} {x} is not a non-negative integer")))
            }
        };
        let levels = v[..l]
            .iter()
            .map(|&x| as_count(x, "level").map(|x| x as usize))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { levels, margins: v[l..2 * l].to_vec(), steps: as_count(v[2 * l], "step count")? })
    }

    /// Writes the state as JSON, atomically ([`ikd_io::atomic_write`]).
    ///
    /// ```
    /// use ikd_distill::{IkdLossConfig, IkdLossState};
    /// let dir = std::env::temp_dir().join(format!("ikd-distill-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("loss_state.json");
    /// let s = IkdLossState::new(&IkdLossConfig::paper());
    /// s.save_json(&path)?;
    /// assert_eq!(IkdLossState::load_json(&path)?, s);
    /// std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save_json(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let text = serde_json::to_string_pretty(self)
            .map_err(|source| DistillError::Json { path: path.to_path_buf(), source })?;
        ikd_io::atomic_write(path, text.as_bytes())
            .map_err(|e| DistillError::Io { path: e.path, source: e.cause })
    }

    /// Reads a state written by [`save_json`](Self::save_json).
    ///
    /// ```
    /// let err = ikd_distill::IkdLossState::load_json("/nonexistent/loss_state.json").unwrap_err();
    /// assert!(err.to_string().contains("/nonexistent/loss_state.json"));
    /// ```
    pub fn load_json(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| DistillError::Io { path: path.to_path_buf(), source })?;
        serde_json::from_str(&text)
            .map_err(|source| DistillError::Json { path: path.to_path_buf(), source })
    }
}

/// What [`IkdLoss::forward`] returns. The vectors are in the order of the config's `levels`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use ikd_distill::{IkdLoss, IkdLossConfig};
/// let dev = Device::Cpu;
/// let t: Vec<Tensor> = (0..4).map(|_| Tensor::randn(0f32, 1.0, (2, 8, 6, 6), &dev)).collect::<Result<_, _>>()?;
/// let s: Vec<Tensor> = (0..4).map(|_| Tensor::randn(0f32, 1.0, (2, 8, 6, 6), &dev)).collect::<Result<_, _>>()?;
/// let out = IkdLoss::new(IkdLossConfig::paper())?.forward(&t, &s)?;
/// // total = (1·loss₁ + 2·loss₂) / 3
/// let total = out.total.to_scalar::<f32>()? as f64;
/// let expect = (out.per_level[0] + 2.0 * out.per_level[1]) / 3.0;
/// assert!((total - expect).abs() < 1e-6 * expect);
/// let gamma = IkdLossConfig::paper().gamma;
/// for i in 0..2 {
///     let ctx = out.context[i].unwrap_or(0.0);
///     assert!((out.pixel[i] + gamma * ctx - out.per_level[i]).abs() < 1e-9);
///     assert!(out.kept[i] <= out.pixels[i] && out.pixels[i] == 2 * 6 * 6);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct LossOutput {
    /// The total loss Σ w·loss_l / Σ w, a scalar (F64 for F64 student maps, F32 otherwise; it is
    /// accumulated in f64), differentiable with respect to the student maps (and only them).
    pub total: Tensor,
    /// Each level's loss: pixel + γ·context, or mean(d) when no pixel reached the margin.
    pub per_level: Vec<f64>,
    /// Each level's margin after this step's update (the state the next step starts from).
    pub margins: Vec<f64>,
    /// Each level's pixel-similarity loss (mean of the kept d; mean of all d when none was kept).
    pub pixel: Vec<f64>,
    /// Each level's context-similarity loss before γ, `None` where it was not computed (context
    /// off, γ = 0, or no pixel kept).
    pub context: Vec<Option<f64>>,
    /// How many pixels (of N·H·W) each level kept.
    pub kept: Vec<usize>,
    /// How many pixels (N·H·W) each level has.
    pub pixels: Vec<usize>,
}

/// The IKD distillation loss (Cao et al., *Informative Knowledge Distillation for Image Anomaly
/// Segmentation*, KBS 2022) with its state, the per-level AHSM margins.
///
/// For each configured level with teacher map T and student map S (N,C,H,W):
/// 1. T̂, Ŝ = T, S L2-normalised over C at every pixel (as `F.normalize`; T is detached);
///    d = Σ_c (T̂ − Ŝ)² (N·H·W values);
/// 2. AHSM: m ← α·m + (1 − α)·(mean(d) + β·std(d)), std unbiased; mean and std are taken in f64
///    over the distances and rounded to the distances' dtype, as `.item()` of the published
///    PyTorch code does; the margin itself is f64; pixels with d ≥ m (compared in d's dtype) are
///    kept (all pixels when mining is off);
/// 3. no pixel kept → the level's loss is mean(d); otherwise pixel loss = mean of the kept d,
///    context loss = mean over all kept pairs (i, j) of (T̂_i·T̂_j − Ŝ_i·Ŝ_j)²
///    ([`crate::context_similarity`], C×C form in f64), level loss = pixel + γ·context;
/// 4. total = Σ w_l·loss_l / Σ w_l.
///
/// Deviations from the published code, none of which changes a result it defines: it keeps one
/// margin per level (the published `calculate_loss` threads a single variable through the levels),
/// a level with no kept pixel gives mean(d) instead of NaN, a map with a single pixel has std 0
/// instead of NaN, and the state is not updated when a step fails.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use ikd_distill::{IkdLoss, IkdLossConfig};
///
/// let dev = Device::Cpu;
/// // The four IKD feature maps (x0..x3) of teacher and student; the loss uses levels 1 and 2.
/// let teacher: Vec<Tensor> = (0..4).map(|_| Tensor::randn(0f32, 1.0, (2, 16, 8, 8), &dev)).collect::<Result<_, _>>()?;
/// let student: Vec<Var> = (0..4).map(|_| Var::randn(0f32, 1.0, (2, 16, 8, 8), &dev)).collect::<Result<_, _>>()?;
/// let student_t: Vec<Tensor> = student.iter().map(|v| v.as_tensor().clone()).collect();
///
/// let mut loss = IkdLoss::new(IkdLossConfig::paper())?;
/// let out = loss.forward(&teacher, &student_t)?;
/// assert!(out.margins.iter().all(|&m| m > 0.0));
/// assert_eq!(loss.state().margins, out.margins);
/// assert_eq!(loss.state().steps, 1);
///
/// let grads = out.total.backward()?;
/// assert!(grads.get(&student[1]).is_some() && grads.get(&student[2]).is_some());
/// assert!(grads.get(&student[0]).is_none()); // level 0 is not used
/// assert!(grads.get(&teacher[1]).is_none()); // the teacher gets no gradient
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct IkdLoss {
    cfg: IkdLossConfig,
    state: IkdLossState,
}

impl IkdLoss {
    /// A loss with a fresh state (all margins 0). Fails if the config is invalid.
    ///
    /// ```
    /// use ikd_distill::{IkdLoss, IkdLossConfig};
    /// assert!(IkdLoss::new(IkdLossConfig::stpm()).is_ok());
    /// assert!(IkdLoss::new(IkdLossConfig { levels: vec![], weights: vec![], ..IkdLossConfig::paper() }).is_err());
    /// ```
    pub fn new(cfg: IkdLossConfig) -> Result<Self> {
        cfg.validate()?;
        let state = IkdLossState::new(&cfg);
        Ok(Self { cfg, state })
    }

    /// A loss resuming from a checkpointed state. Fails if the state belongs to other levels.
    ///
    /// ```
    /// use ikd_distill::{IkdLoss, IkdLossConfig, IkdLossState};
    /// let mut state = IkdLossState::new(&IkdLossConfig::paper());
    /// state.margins = vec![0.3, 0.2];
    /// let loss = IkdLoss::with_state(IkdLossConfig::paper(), state.clone())?;
    /// assert_eq!(loss.state(), &state);
    /// # Ok::<(), ikd_distill::DistillError>(())
    /// ```
    pub fn with_state(cfg: IkdLossConfig, state: IkdLossState) -> Result<Self> {
        cfg.validate()?;
        state.check(&cfg)?;
        Ok(Self { cfg, state })
    }

    /// The configuration.
    ///
    /// ```
    /// let loss = ikd_distill::IkdLoss::new(ikd_distill::IkdLossConfig::no_context())?;
    /// assert!(!loss.config().context);
    /// # Ok::<(), ikd_distill::DistillError>(())
    /// ```
    pub fn config(&self) -> &IkdLossConfig {
        &self.cfg
    }

    /// The current state (margins after the last successful step).
    ///
    /// ```
    /// let loss = ikd_distill::IkdLoss::new(ikd_distill::IkdLossConfig::paper())?;
    /// assert_eq!(loss.state().margins, vec![0.0, 0.0]);
    /// # Ok::<(), ikd_distill::DistillError>(())
    /// ```
    pub fn state(&self) -> &IkdLossState {
        &self.state
    }

    /// Replaces the state, e.g. when resuming training. Fails (leaving the state as it was) if
    /// the state belongs to other levels or holds a non-finite margin.
    ///
    /// ```
    /// use ikd_distill::{IkdLoss, IkdLossConfig, IkdLossState};
    /// let mut loss = IkdLoss::new(IkdLossConfig::paper())?;
    /// let mut s = IkdLossState::new(&IkdLossConfig::paper());
    /// s.margins = vec![1.0, 2.0];
    /// loss.set_state(s)?;
    /// assert_eq!(loss.state().margins, vec![1.0, 2.0]);
    /// # Ok::<(), ikd_distill::DistillError>(())
    /// ```
    pub fn set_state(&mut self, state: IkdLossState) -> Result<()> {
        state.check(&self.cfg)?;
        self.state = state;
        Ok(())
    }

    /// Resets every margin to 0 and the step count to 0.
    ///
    /// ```
    /// let mut loss = ikd_distill::IkdLoss::new(ikd_distill::IkdLossConfig::paper())?;
    /// loss.reset();
    /// assert_eq!(loss.state().steps, 0);
    /// # Ok::<(), ikd_distill::DistillError>(())
    /// ```
    pub fn reset(&mut self) {
        self.state = IkdLossState::new(&self.cfg);
    }

    /// One training step of the loss: computes it on the feature maps and updates the margins
    /// (detached). `teacher` and `student` hold the IKD feature maps indexed by level (normally
    /// the four maps x0..x3, all of shape (N,C_l,H,W)); only the configured levels are read, and
    /// they must exist in both slices with equal shapes, dtypes and devices. The teacher maps are
    /// detached here: gradients of `total` reach the student maps only.
    ///
    /// On error the state is left unchanged.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use ikd_distill::{IkdLoss, IkdLossConfig};
    /// let dev = Device::Cpu;
    /// let t: Vec<Tensor> = (0..3).map(|_| Tensor::randn(0f32, 1.0, (1, 4, 5, 5), &dev)).collect::<Result<_, _>>()?;
    /// let mut loss = IkdLoss::new(IkdLossConfig::paper())?;
    /// // Student = teacher: every distance is 0, every pixel reaches the margin 0, the loss is 0.
    /// let out = loss.forward(&t, &t)?;
    /// assert_eq!(out.total.to_scalar::<f32>()?, 0.0);
    /// assert_eq!(out.kept, vec![25, 25]);
    /// // Level 3 is missing from these slices.
    /// let mut bad = IkdLoss::new(IkdLossConfig { levels: vec![3], weights: vec![1.0], ..IkdLossConfig::paper() })?;
    /// assert!(bad.forward(&t, &t).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn forward(&mut self, teacher: &[Tensor], student: &[Tensor]) -> Result<LossOutput> {
        let cfg = &self.cfg;
        let nl = cfg.levels.len();
        let mut per_level = Vec::with_capacity(nl);
        let mut margins = Vec::with_capacity(nl);
        let mut pixel = Vec::with_capacity(nl);
        let mut context = Vec::with_capacity(nl);
        let mut kept = Vec::with_capacity(nl);
        let mut pixels = Vec::with_capacity(nl);
        let mut total: Option<Tensor> = None;
        let mut out_dtype = DType::F32;
        for (i, (&level, &w)) in cfg.levels.iter().zip(&cfg.weights).enumerate() {
            let (t, s) = crate::ops::level_pair(teacher, student, level)?;
            if s.dtype() == DType::F64 {
                out_dtype = DType::F64;
            }
            let lvl = level_loss(cfg, level, self.state.margins[i], t, s)?;
            let weighted = lvl.loss.affine(w, 0.0)?;
            total = Some(match total {
                None => weighted,
                Some(acc) => (acc + weighted)?,
            });
            per_level.push(lvl.loss.to_scalar::<f64>()?);
            margins.push(lvl.margin);
            pixel.push(lvl.pixel);
            context.push(lvl.context);
            kept.push(lvl.kept);
            pixels.push(lvl.pixels);
        }
        let total = total.ok_or_else(|| DistillError::Config("levels is empty".into()))?;
        let wsum: f64 = cfg.weights.iter().sum();
        let total = total.affine(1.0 / wsum, 0.0)?.to_dtype(out_dtype)?;
        let out = LossOutput { total, per_level, margins, pixel, context, kept, pixels };
        tracing::trace!(
            step = self.state.steps + 1,
            margins = ?out.margins,
            kept = ?out.kept,
            per_level = ?out.per_level,
            "ikd loss"
        );
        self.state.margins.clone_from(&out.margins);
        self.state.steps += 1;
        Ok(out)
    }
}

struct LevelLoss {
    /// Scalar F64 tensor, differentiable w.r.t. the student map.
    loss: Tensor,
    margin: f64,
    pixel: f64,
    context: Option<f64>,
    kept: usize,
    pixels: usize,
}

/// Rounds `x` to the precision of `dtype` (f32 for all but F64), as PyTorch's `.item()` of a
/// tensor of that dtype would give it.
fn round_to(x: f64, dtype: DType) -> f64 {
    if dtype == DType::F64 {
        x
    } else {
        x as f32 as f64
    }
}

/// Mean and unbiased std of `d` in f64 (std 0 for fewer than two values).
fn mean_std(d: &[f64]) -> (f64, f64) {
    let n = d.len() as f64;
    let mean = d.iter().sum::<f64>() / n;
    if d.len() < 2 {
        return (mean, 0.0);
    }
    let var = d.iter().map(|&x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

fn level_loss(
    cfg: &IkdLossConfig,
    level: usize,
    margin_prev: f64,
    teacher: &Tensor,
    student: &Tensor,
) -> Result<LevelLoss> {
    let (t_hat, s_hat, d) = normalized_distance(level, teacher, student)?;
    let d_dtype = d.dtype();
    let d_flat = d.flatten_all()?;
    let d_host = d_flat.detach().to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let pixels = d_host.len();
    let (mean, std) = mean_std(&d_host);
    if !(mean.is_finite() && std.is_finite()) {
        return Err(DistillError::NonFinite { level, mean, std });
    }
    let (mean, std) = (round_to(mean, d_dtype), round_to(std, d_dtype));
    let margin = cfg.alpha * margin_prev + (1.0 - cfg.alpha) * (mean + cfg.beta * std);
    let threshold = round_to(margin, d_dtype);

    let kept_idx: Option<Vec<u32>> = if cfg.mining {
        Some(
            d_host
                .iter()
                .enumerate()
                .filter(|(_, &v)| v >= threshold)
                .map(|(i, _)| i as u32)
                .collect(),
        )
    } else {
        None
    };
    let kept = kept_idx.as_ref().map_or(pixels, Vec::len);

    if kept == 0 {
        let loss = d_flat.to_dtype(DType::F64)?.mean_all()?;
        let pixel = loss.to_scalar::<f64>()?;
        return Ok(LevelLoss { loss, margin, pixel, context: None, kept, pixels });
    }

    let idx = match kept_idx {
        Some(idx) if idx.len() < pixels => Some(Tensor::from_vec(idx, kept, d.device())?),
        _ => None,
    };
    let select = |x: Tensor| -> Result<Tensor> {
        match &idx {
            Some(idx) => Ok(x.index_select(idx, 0)?),
            None => Ok(x),
        }
    };
    let d_kept = select(d_flat)?;
    let pixel_loss = d_kept.to_dtype(DType::F64)?.mean_all()?;
    let pixel = pixel_loss.to_scalar::<f64>()?;
    let (loss, context) = if cfg.uses_context() {
        let qt = select(t_hat)?;
        let qs = select(s_hat)?;
        let ctx = context_similarity(&qt, &qs)?;
        let ctx_value = ctx.to_scalar::<f64>()?;
        ((pixel_loss + ctx.affine(cfg.gamma, 0.0)?)?, Some(ctx_value))
    } else {
        (pixel_loss, None)
    };
    Ok(LevelLoss { loss, margin, pixel, context, kept, pixels })
}
