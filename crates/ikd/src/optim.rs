//! AdamW exactly as PyTorch's `torch.optim.AdamW`, with its state exposed for checkpoints.
//!
//! candle-nn's `AdamW` computes the same update but keeps its moments private, so a run could not be
//! resumed bit-for-bit. This one stores the first and second moments and the step count, and can
//! export and restore them as named tensors.

use std::collections::HashMap;

use candle_core::{backprop::GradStore, Result, Tensor, Var};

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
        let t = self.step as i32;
        let scale_m = 1.0 / (1.0 - p.beta1.powi(t));
        let scale_v = 1.0 / (1.0 - p.beta2.powi(t));
        for (_, theta, m, v) in &self.vars {
            let Some(g) = grads.get(theta.as_tensor()) else { continue };
            if fused::applies(theta, g) {
                let g = g.contiguous()?;
                m.as_tensor().inplace_op2(&g, &fused::Moment { beta: p.beta1, square: false })?;
                v.as_tensor().inplace_op2(&g, &fused::Moment { beta: p.beta2, square: true })?;
                let update = fused::Update { params: p, scale_m, scale_v };
                theta.as_tensor().inplace_op3(m.as_tensor(), v.as_tensor(), &update)?;
                continue;
            }
            step_tensors(p, theta, m, v, g, scale_m, scale_v)?;
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

/// One AdamW update of `theta` and its moments with candle's tensor ops (other devices).
fn step_tensors(
    p: AdamWParams,
    theta: &Var,
    m: &Var,
    v: &Var,
    g: &Tensor,
    scale_m: f64,
    scale_v: f64,
) -> Result<()> {
    let next_m = ((m.as_tensor() * p.beta1)? + (g * (1.0 - p.beta1))?)?;
    let next_v = ((v.as_tensor() * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
    let m_hat = (&next_m * scale_m)?;
    let v_hat = (&next_v * scale_v)?;
    let decayed = (theta.as_tensor() * (1.0 - p.lr * p.weight_decay))?;
    let update = (m_hat / (v_hat.sqrt()? + p.eps)?)?;
    theta.set(&(decayed - (update * p.lr)?)?)?;
    m.set(&next_m)?;
    v.set(&next_v)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor, Var};

    use super::*;

    /// The fused CPU update and the tensor-op update agree bit for bit over a few steps.
    #[test]
    fn fused_update_equals_tensor_ops() {
        // small tensors run in one pass, large ones split over rayon's pool
        for (dtype, dims) in
            [(DType::F32, (3, 17)), (DType::F64, (3, 17)), (DType::F32, (300, 250))]
        {
            let init =
                Tensor::randn(0f32, 1., dims, &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
            let a = Var::from_tensor(&init).unwrap();
            let b = Var::from_tensor(&init.copy().unwrap()).unwrap();
            let p = AdamWParams { lr: 5e-3, ..Default::default() };
            let mut opt = AdamW::new(vec![("w".into(), a.clone())], p).unwrap();
            let (m, v) = (
                Var::zeros(dims, dtype, &Device::Cpu).unwrap(),
                Var::zeros(dims, dtype, &Device::Cpu).unwrap(),
            );
            for t in 1..=4 {
                let g =
                    Tensor::randn(0f32, 1., dims, &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
                // the gradient of Σ a·g is g
                opt.backward_step(&a.as_tensor().mul(&g).unwrap().sum_all().unwrap()).unwrap();
                let (sm, sv) = (1. / (1. - p.beta1.powi(t)), 1. / (1. - p.beta2.powi(t)));
                step_tensors(p, &b, &m, &v, &g, sm, sv).unwrap();
                let (x, y) = (
                    a.flatten_all().unwrap().to_dtype(DType::F64).unwrap(),
                    b.flatten_all().unwrap().to_dtype(DType::F64).unwrap(),
                );
                assert_eq!(
                    x.to_vec1::<f64>().unwrap(),
                    y.to_vec1::<f64>().unwrap(),
                    "{dtype:?} step {t}"
                );
                assert_ne!(
                    x.to_vec1::<f64>().unwrap(),
                    init.flatten_all()
                        .unwrap()
                        .to_dtype(DType::F64)
                        .unwrap()
                        .to_vec1::<f64>()
                        .unwrap()
                );
            }
            let state = opt.state_tensors();
            assert_eq!(
                state["m.w"]
                    .flatten_all()
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap(),
                m.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap()
            );
        }
    }
}

/// The same update in one pass per tensor on the CPU (three in-place ops instead of thirteen
/// tensor ops, each allocating), with the same f32/f64 arithmetic in the same order as the tensor
/// ops above, so both give identical results.
mod fused {
    use candle_core::{CpuStorage, DType, InplaceOp2, InplaceOp3, Layout, Result, Tensor, Var};
    use rayon::prelude::*;

    use super::AdamWParams;

    pub(super) fn applies(theta: &Var, g: &Tensor) -> bool {
        theta.device().is_cpu()
            && matches!(theta.dtype(), DType::F32 | DType::F64)
            && g.dtype() == theta.dtype()
            && theta.is_contiguous()
            && theta.dims() == g.dims()
    }

    fn contiguous<'a, T>(data: &'a [T], l: &Layout) -> Result<&'a [T]> {
        match l.contiguous_offsets() {
            Some((a, b)) => Ok(&data[a..b]),
            None => candle_core::bail!("adamw: expects contiguous tensors"),
        }
    }

    fn contiguous_mut<'a, T>(data: &'a mut [T], l: &Layout) -> Result<&'a mut [T]> {
        match l.contiguous_offsets() {
            Some((a, b)) => Ok(&mut data[a..b]),
            None => candle_core::bail!("adamw: expects contiguous tensors"),
        }
    }

    /// `m ← m·β + g·(1 − β)` (or `g²` for the second moment).
    pub(super) struct Moment {
        pub beta: f64,
        pub square: bool,
    }

    /// Elements per parallel task (large tensors are split over rayon's pool).
    const CHUNK: usize = 1 << 14;

    macro_rules! moment {
        ($t:ty, $m:expr, $g:expr, $self:expr) => {{
            let (b, c) = ($self.beta as $t, (1.0 - $self.beta) as $t);
            let square = $self.square;
            let body = |ms: &mut [$t], gs: &[$t]| {
                for (m, &g) in ms.iter_mut().zip(gs) {
                    let g = if square { g * g } else { g };
                    *m = *m * b + g * c;
                }
            };
            let (ms, gs) = ($m, $g);
            if ms.len() >= 2 * CHUNK {
                ms.par_chunks_mut(CHUNK).zip(gs.par_chunks(CHUNK)).for_each(|(m, g)| body(m, g));
            } else {
                body(ms, gs);
            }
        }};
    }

    impl InplaceOp2 for Moment {
        fn name(&self) -> &'static str {
            "adamw-moment"
        }
        fn cpu_fwd(
            &self,
            s1: &mut CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
        ) -> Result<()> {
            match (s1, s2) {
                (CpuStorage::F32(m), CpuStorage::F32(g)) => {
                    moment!(f32, contiguous_mut(m, l1)?, contiguous(g, l2)?, self)
                }
                (CpuStorage::F64(m), CpuStorage::F64(g)) => {
                    moment!(f64, contiguous_mut(m, l1)?, contiguous(g, l2)?, self)
                }
                _ => candle_core::bail!("adamw: f32 or f64 tensors of one dtype only"),
            }
            Ok(())
        }
    }

    /// `θ ← θ·(1 − lr·wd) − lr·(m·s_m) / (√(v·s_v) + ε)`.
    pub(super) struct Update {
        pub params: AdamWParams,
        pub scale_m: f64,
        pub scale_v: f64,
    }

    macro_rules! update {
        ($t:ty, $theta:expr, $m:expr, $v:expr, $self:expr) => {{
            let p = $self.params;
            let (sm, sv, eps) = ($self.scale_m as $t, $self.scale_v as $t, p.eps as $t);
            let (decay, lr) = ((1.0 - p.lr * p.weight_decay) as $t, p.lr as $t);
            let body = |ts: &mut [$t], ms: &[$t], vs: &[$t]| {
                for ((t, &m), &v) in ts.iter_mut().zip(ms).zip(vs) {
                    let update = (m * sm) / ((v * sv).sqrt() + eps);
                    *t = *t * decay - update * lr;
                }
            };
            let (ts, ms, vs) = ($theta, $m, $v);
            if ts.len() >= 2 * CHUNK {
                ts.par_chunks_mut(CHUNK)
                    .zip(ms.par_chunks(CHUNK).zip(vs.par_chunks(CHUNK)))
                    .for_each(|(t, (m, v))| body(t, m, v));
            } else {
                body(ts, ms, vs);
            }
        }};
    }

    impl InplaceOp3 for Update {
        fn name(&self) -> &'static str {
            "adamw-update"
        }
        fn cpu_fwd(
            &self,
            s1: &mut CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
            s3: &CpuStorage,
            l3: &Layout,
        ) -> Result<()> {
            match (s1, s2, s3) {
                (CpuStorage::F32(t), CpuStorage::F32(m), CpuStorage::F32(v)) => update!(
                    f32,
                    contiguous_mut(t, l1)?,
                    contiguous(m, l2)?,
                    contiguous(v, l3)?,
                    self
                ),
                (CpuStorage::F64(t), CpuStorage::F64(m), CpuStorage::F64(v)) => update!(
                    f64,
                    contiguous_mut(t, l1)?,
                    contiguous(m, l2)?,
                    contiguous(v, l3)?,
                    self
                ),
                _ => candle_core::bail!("adamw: f32 or f64 tensors of one dtype only"),
            }
            Ok(())
        }
    }
}
