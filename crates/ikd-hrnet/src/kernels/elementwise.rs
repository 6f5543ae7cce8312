//! `relu(a + b)` in one pass.

use candle_core::{CpuStorage, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{slice, tensor, with_cpu, Float};

const CHUNK: usize = 8 * 1024;
const MIN_PAR: usize = 32 * 1024;

#[derive(Debug, Clone, Copy)]
struct AddReluOp;

impl AddReluOp {
    fn fwd<T: Float>(
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.dims() != l2.dims() {
            candle_core::bail!("add-relu: shapes differ, {:?} and {:?}", l1.dims(), l2.dims())
        }
        let (a, b) = (slice::<T>(s1, l1, "add-relu")?, slice::<T>(s2, l2, "add-relu")?);
        let mut y = vec![T::ZERO; a.len()];
        let f = |(o, (a, b)): (&mut [T], (&[T], &[T]))| {
            for ((o, &x), &z) in o.iter_mut().zip(a).zip(b) {
                let t = x + z;
                *o = if t > T::ZERO { t } else { T::ZERO };
            }
        };
        if a.len() >= MIN_PAR {
            y.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(f);
        } else {
            f((&mut y, (a, b)));
        }
        Ok((T::to_cpu_storage_owned(y), l1.shape().clone()))
    }

    fn bwd_typed<T: Float>(y: &Tensor, dy: &Tensor) -> Result<Tensor> {
        let g = with_cpu::<T, _>(y, |ys| {
            with_cpu::<T, _>(dy, |dys| {
                Ok(dys
                    .iter()
                    .zip(ys)
                    .map(|(&g, &v)| if v > T::ZERO { g } else { T::ZERO })
                    .collect())
            })
        })?;
        Ok(tensor::<T>(g, y.shape().clone()))
    }
}

impl candle_core::CustomOp2 for AddReluOp {
    fn name(&self) -> &'static str {
        "ikd-add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        match s1 {
            CpuStorage::F32(_) => Self::fwd::<f32>(s1, l1, s2, l2),
            CpuStorage::F64(_) => Self::fwd::<f64>(s1, l1, s2, l2),
            _ => candle_core::bail!(
                "ikd add-relu: f32 or f64 only, got {:?}",
                candle_core::backend::BackendStorage::dtype(s1)
            ),
        }
    }

    fn bwd(
        &self,
        _a: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = match res.dtype() {
            DType::F32 => Self::bwd_typed::<f32>(res, grad)?,
            _ => Self::bwd_typed::<f64>(res, grad)?,
        };
        Ok((Some(g.clone()), Some(g)))
    }
}

/// `relu(a + b)` for tensors of one shape (a residual block's output). The CPU kernel where
/// [`super::applies`], candle's ops otherwise; differentiable either way.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let a = Tensor::new(&[1f32, -2., 3.], &Device::Cpu)?;
/// let b = Tensor::new(&[1f32, 1., -4.], &Device::Cpu)?;
/// let y = ikd_hrnet::kernels::add_relu(&a, &b)?;
/// assert_eq!(y.to_vec1::<f32>()?, vec![2., 0., 0.]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if !super::applies(&[a, b]) {
        return (a + b)?.relu();
    }
    a.contiguous()?.apply_op2(&b.contiguous()?, AddReluOp)
}
