//! AdamW exactly as PyTorch's `torch.optim.AdamW`, with its state exposed for checkpoints.
//!
//! candle-nn's `AdamW` computes the same update but keeps its moments private, so a run could not be
//! resumed bit-for-bit. This one stores the first and second moments and the step count, and can
//! export and restore them as named tensors; `ikd_kernels::adamw_update` computes each
//! parameter's update (in place on the CPU).

use std::collections::HashMap;

use candle_core::{backprop::GradStore, Result, Tensor, Var};
use ikd_kernels::AdamWStep;

/// Hyper-parameters of AdamW; `Default` is PyTorch's (lr 1e-3, betas (0.9, 0.999), eps 1e-8,
/// weight decay 0.01).
///
/// ```
/// let p = ikd::optim::AdamWParams { lr: 5e-5, ..Default::default() };
/// assert_eq!(p.weight_decay, 0.01);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWParams {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        Self { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 }
    }
}

/// AdamW over a set of named variables.
///
/// ```
/// use candle_core::{Device, Var};
/// use ikd::optim::{AdamW, AdamWParams};
/// # fn main() -> candle_core::Result<()> {
/// let w = Var::new(&[1.0f32, -2.0], &Device::Cpu)?;
/// let mut opt = AdamW::new(vec![("w".to_string(), w.clone())], AdamWParams::default())?;
/// let loss = w.as_tensor().sqr()?.sum_all()?;
/// opt.backward_step(&loss)?;
/// assert_eq!(opt.step_count(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AdamW {
    params: AdamWParams,
    vars: Vec<(String, Var, Var, Var)>,
    step: u64,
}

impl AdamW {
    /// An optimiser over `vars` (name, variable), moments at zero.
    ///
    /// ```
    /// # use candle_core::{Device, Var};
    /// # use ikd::optim::{AdamW, AdamWParams};
    /// let w = Var::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap();
    /// let opt = AdamW::new(vec![("w".into(), w)], AdamWParams::default()).unwrap();
    /// assert_eq!(opt.step_count(), 0);
    /// ```
    pub fn new(vars: Vec<(String, Var)>, params: AdamWParams) -> Result<Self> {
        let vars = vars
            .into_iter()
            .map(|(name, v)| {
                let m = Var::zeros(v.shape(), v.dtype(), v.device())?;
                let s = Var::zeros(v.shape(), v.dtype(), v.device())?;
                Ok((name, v, m, s))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { params, vars, step: 0 })
    }

    /// The hyper-parameters.
    ///
    /// ```
    /// # use ikd::optim::{AdamW, AdamWParams};
    /// let opt = AdamW::new(vec![], AdamWParams::default()).unwrap();
    /// assert_eq!(opt.params().lr, 1e-3);
    /// ```
    pub fn params(&self) -> &AdamWParams {
        &self.params
    }

    /// Number of steps taken so far.
    ///
    /// ```
    /// # use ikd::optim::{AdamW, AdamWParams};
    /// assert_eq!(AdamW::new(vec![], AdamWParams::default()).unwrap().step_count(), 0);
    /// ```
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// One update from the gradients in `grads`; variables without a gradient are left alone.
    ///
    /// ```
    /// # use candle_core::{Device, Var};
    /// # use ikd::optim::{AdamW, AdamWParams};
    /// let w = Var::new(&[3.0f32], &Device::Cpu).unwrap();
    /// let mut opt = AdamW::new(vec![("w".into(), w.clone())], AdamWParams { lr: 0.1, ..Default::default() }).unwrap();
    /// let grads = w.as_tensor().sqr().unwrap().sum_all().unwrap().backward().unwrap();
    /// opt.step(&grads).unwrap();
    /// assert!(w.as_tensor().to_vec1::<f32>().unwrap()[0] < 3.0);
    /// ```
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let p = self.params;
        let (lr, beta1, beta2, eps, weight_decay) = (p.lr, p.beta1, p.beta2, p.eps, p.weight_decay);
        let step = AdamWStep { lr, beta1, beta2, eps, weight_decay, step: self.step };
        for (_, theta, m, v) in &self.vars {
            let Some(g) = grads.get(theta.as_tensor()) else { continue };
            ikd_kernels::adamw_update(theta, m, v, g, &step)?;
        }
        Ok(())
    }

    /// Back-propagates `loss` and takes one step.
    ///
    /// ```
    /// # use candle_core::{Device, Var};
    /// # use ikd::optim::{AdamW, AdamWParams};
    /// let w = Var::new(&[3.0f32], &Device::Cpu).unwrap();
    /// let mut opt = AdamW::new(vec![("w".into(), w.clone())], AdamWParams::default()).unwrap();
    /// opt.backward_step(&w.as_tensor().sqr().unwrap().sum_all().unwrap()).unwrap();
    /// ```
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let grads = loss.backward()?;
        self.step(&grads)
    }

    /// The moments as named tensors (`m.<name>`, `v.<name>`), for a checkpoint.
    ///
    /// ```
    /// # use candle_core::{Device, Var};
    /// # use ikd::optim::{AdamW, AdamWParams};
    /// let w = Var::new(&[3.0f32], &Device::Cpu).unwrap();
    /// let opt = AdamW::new(vec![("w".into(), w)], AdamWParams::default()).unwrap();
    /// assert!(opt.state_tensors().contains_key("m.w"));
    /// ```
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (name, _, m, v) in &self.vars {
            out.insert(format!("m.{name}"), m.as_tensor().clone());
            out.insert(format!("v.{name}"), v.as_tensor().clone());
        }
        out
    }

    /// Restores moments saved by [`AdamW::state_tensors`] and the step count.
    /// Every variable's moments must be present with the right shape.
    ///
    /// ```
    /// # use candle_core::{Device, Var};
    /// # use ikd::optim::{AdamW, AdamWParams};
    /// let w = Var::new(&[3.0f32], &Device::Cpu).unwrap();
    /// let mut opt = AdamW::new(vec![("w".into(), w)], AdamWParams::default()).unwrap();
    /// let state = opt.state_tensors();
    /// opt.load_state(&state, 7).unwrap();
    /// assert_eq!(opt.step_count(), 7);
    /// ```
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, step: u64) -> Result<()> {
        for (name, theta, m, v) in &self.vars {
            for (prefix, var) in [("m", m), ("v", v)] {
                let key = format!("{prefix}.{name}");
                let t = state.get(&key).ok_or_else(|| {
                    candle_core::Error::Msg(format!("optimizer state lacks tensor `{key}`"))
                })?;
                if t.dims() != theta.dims() {
                    candle_core::bail!(
                        "optimizer state tensor `{key}` has shape {:?}, the parameter has {:?}",
                        t.dims(),
                        theta.dims()
                    );
                }
                var.set(&t.to_dtype(theta.dtype())?.to_device(theta.device())?.copy()?)?;
            }
        }
        self.step = step;
        Ok(())
    }
}
