//! AdamW's update of one parameter, as PyTorch's `torch.optim.AdamW` computes it: in place in
//! one pass per tensor on the CPU (three in-place ops instead of thirteen tensor ops, each
//! allocating), with the same f32/f64 arithmetic in the same order as candle's tensor ops take
//! elsewhere, so both give identical results.

use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor, Var};
use rayon::prelude::*;

use crate::cpu::{slice, slice_mut, Float};

/// The constants of one AdamW step: the hyper-parameters and the step's number.
///
/// ```
/// let s = ikd_kernels::AdamWStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, step: 1 };
/// assert_eq!(s.bias_corrections().0, 1. / (1. - 0.9));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
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
    /// The step's number, from 1.
    pub step: u64,
}

impl AdamWStep {
    /// The factors `1 / (1 − β₁ᵗ)` and `1 / (1 − β₂ᵗ)` of the moments at step `t`.
    ///
    /// ```
    /// let s = ikd_kernels::AdamWStep { lr: 1e-3, beta1: 0.5, beta2: 0.75, eps: 1e-8, weight_decay: 0., step: 2 };
    /// assert_eq!(s.bias_corrections(), (1. / 0.75, 1. / (1. - 0.5625)));
    /// ```
    pub fn bias_corrections(&self) -> (f64, f64) {
        let t = self.step as i32;
        (1.0 / (1.0 - self.beta1.powi(t)), 1.0 / (1.0 - self.beta2.powi(t)))
    }
}

/// One AdamW update of the parameter `theta` and its moments `m` and `v` from its gradient `g`:
/// `m ← β₁·m + (1 − β₁)·g`, `v ← β₂·v + (1 − β₂)·g²`,
/// `θ ← θ·(1 − lr·wd) − lr·m̂ / (√v̂ + ε)` with the bias-corrected moments `m̂` and `v̂`. In place
/// by the CPU kernel for contiguous f32 or f64 parameters on the CPU (split over rayon's pool for
/// large tensors), by candle's tensor ops otherwise; the two agree bit for bit, so no
/// [`crate::KernelPolicy`] chooses between them.
///
/// ```
/// use candle_core::{DType, Device, Var};
/// let theta = Var::new(&[1f32, -2.], &Device::Cpu)?;
/// let (m, v) = (Var::zeros(2, DType::F32, &Device::Cpu)?, Var::zeros(2, DType::F32, &Device::Cpu)?);
/// let g = theta.as_tensor().clone(); // the gradient of ½‖θ‖²
/// let step = ikd_kernels::AdamWStep { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0., step: 1 };
/// ikd_kernels::adamw_update(&theta, &m, &v, &g, &step)?;
/// // the first step moves each entry by lr against the sign of its gradient
/// let t = theta.as_tensor().to_vec1::<f32>()?;
/// assert!((t[0] - 0.9).abs() < 1e-6 && (t[1] + 1.9).abs() < 1e-6);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn adamw_update(theta: &Var, m: &Var, v: &Var, g: &Tensor, step: &AdamWStep) -> Result<()> {
    let (scale_m, scale_v) = step.bias_corrections();
    if !fused_applies(theta, g) {
        return candle_update(theta, m, v, g, step, (scale_m, scale_v));
    }
    let g = g.contiguous()?;
    m.as_tensor().inplace_op2(&g, &Moment { beta: step.beta1, square: false })?;
    v.as_tensor().inplace_op2(&g, &Moment { beta: step.beta2, square: true })?;
    let update = Update { step: *step, scale_m, scale_v };
    theta.as_tensor().inplace_op3(m.as_tensor(), v.as_tensor(), &update)
}

/// Whether the CPU kernel takes this parameter and gradient.
fn fused_applies(theta: &Var, g: &Tensor) -> bool {
    theta.device().is_cpu()
        && matches!(theta.dtype(), candle_core::DType::F32 | candle_core::DType::F64)
        && g.dtype() == theta.dtype()
        && theta.is_contiguous()
        && theta.dims() == g.dims()
}

/// [`adamw_update`] with candle's tensor ops.
fn candle_update(
    theta: &Var,
    m: &Var,
    v: &Var,
    g: &Tensor,
    p: &AdamWStep,
    (scale_m, scale_v): (f64, f64),
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

/// Elements per parallel task (large tensors are split over rayon's pool).
const CHUNK: usize = 1 << 14;

/// `m ← m·β + g·(1 − β)` (or `g²` for the second moment).
struct Moment {
    beta: f64,
    square: bool,
}

impl Moment {
    fn run<T: Float>(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (ms, gs) = (slice_mut::<T>(s1, l1, "adamw")?, slice::<T>(s2, l2, "adamw")?);
        let (b, c) = (T::from_f64(self.beta), T::from_f64(1.0 - self.beta));
        let square = self.square;
        let body = |ms: &mut [T], gs: &[T]| {
            for (m, &g) in ms.iter_mut().zip(gs) {
                let g = if square { g * g } else { g };
                *m = *m * b + g * c;
            }
        };
        if ms.len() >= 2 * CHUNK {
            ms.par_chunks_mut(CHUNK).zip(gs.par_chunks(CHUNK)).for_each(|(m, g)| body(m, g));
        } else {
            body(ms, gs);
        }
        Ok(())
    }
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
        match s2 {
            CpuStorage::F32(_) => self.run::<f32>(s1, l1, s2, l2),
            CpuStorage::F64(_) => self.run::<f64>(s1, l1, s2, l2),
            _ => Err(crate::cpu::unsupported_dtype("adamw", s2)),
        }
    }
}

/// `θ ← θ·(1 − lr·wd) − lr·(m·s_m) / (√(v·s_v) + ε)`.
struct Update {
    step: AdamWStep,
    scale_m: f64,
    scale_v: f64,
}

impl Update {
    fn run<T: Float>(
        &self,
        (s1, l1): (&mut CpuStorage, &Layout),
        (s2, l2): (&CpuStorage, &Layout),
        (s3, l3): (&CpuStorage, &Layout),
    ) -> Result<()> {
        let ts = slice_mut::<T>(s1, l1, "adamw")?;
        let (ms, vs) = (slice::<T>(s2, l2, "adamw")?, slice::<T>(s3, l3, "adamw")?);
        let p = self.step;
        let (sm, sv, eps) =
            (T::from_f64(self.scale_m), T::from_f64(self.scale_v), T::from_f64(p.eps));
        let (decay, lr) = (T::from_f64(1.0 - p.lr * p.weight_decay), T::from_f64(p.lr));
        let body = |ts: &mut [T], ms: &[T], vs: &[T]| {
            for ((t, &m), &v) in ts.iter_mut().zip(ms).zip(vs) {
                let update = (m * sm) / ((v * sv).sqrt() + eps);
                *t = *t * decay - update * lr;
            }
        };
        if ts.len() >= 2 * CHUNK {
            ts.par_chunks_mut(CHUNK)
                .zip(ms.par_chunks(CHUNK).zip(vs.par_chunks(CHUNK)))
                .for_each(|(t, (m, v))| body(t, m, v));
        } else {
            body(ts, ms, vs);
        }
        Ok(())
    }
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
        match s2 {
            CpuStorage::F32(_) => self.run::<f32>((s1, l1), (s2, l2), (s3, l3)),
            CpuStorage::F64(_) => self.run::<f64>((s1, l1), (s2, l2), (s3, l3)),
            _ => Err(crate::cpu::unsupported_dtype("adamw", s2)),
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor, Var};

    use super::*;

    fn values(t: &Tensor) -> Vec<f64> {
        t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap()
    }

    /// The fused CPU update and the tensor-op update agree bit for bit over a few steps, for
    /// the parameter and both moments.
    #[test]
    fn fused_update_equals_tensor_ops() {
        // small tensors run in one pass, large ones split over rayon's pool
        for (dtype, dims) in
            [(DType::F32, (3, 17)), (DType::F64, (3, 17)), (DType::F32, (300, 250))]
        {
            let init =
                Tensor::randn(0f32, 1., dims, &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
            let zeros = || Var::zeros(dims, dtype, &Device::Cpu).unwrap();
            let (a, am, av) = (Var::from_tensor(&init).unwrap(), zeros(), zeros());
            let (b, bm, bv) = (Var::from_tensor(&init.copy().unwrap()).unwrap(), zeros(), zeros());
            assert!(fused_applies(&a, &init));
            for t in 1..=4 {
                let p = AdamWStep {
                    lr: 5e-3,
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: 0.01,
                    step: t,
                };
                let g =
                    Tensor::randn(0f32, 1., dims, &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
                adamw_update(&a, &am, &av, &g, &p).unwrap();
                candle_update(&b, &bm, &bv, &g, &p, p.bias_corrections()).unwrap();
                for (x, y, what) in [(&a, &b, "theta"), (&am, &bm, "m"), (&av, &bv, "v")] {
                    assert_eq!(values(x), values(y), "{dtype:?} step {t}: {what}");
                }
                assert_ne!(values(&a), values(&init));
            }
        }
    }
}
