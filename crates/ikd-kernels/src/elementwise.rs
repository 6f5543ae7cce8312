//! `relu(a + b)` in one pass, and nearest-neighbour upsampling by an integer factor.

use candle_core::{CpuStorage, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu::{masked, relu, slice, tensor, with_cpu, Float};
use crate::KernelPolicy;

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
        let y = crate::cpu::filled(a.len(), CHUNK, (a.len() >= MIN_PAR, 1), |i, o| {
            let r = i * CHUNK..((i + 1) * CHUNK).min(a.len());
            o.map2(&a[r.clone()], &b[r], |x, z| relu(x + z));
        });
        Ok((T::to_cpu_storage_owned(y), l1.shape().clone()))
    }

    fn bwd_typed<T: Float>(y: &Tensor, dy: &Tensor) -> Result<Tensor> {
        let g = with_cpu::<T, _>(y, |ys| with_cpu::<T, _>(dy, |dys| Ok(masked(dys, ys))))?;
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
            _ => Err(crate::cpu::unsupported_dtype("ikd add-relu", s1)),
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
/// `policy` [applies](KernelPolicy::applies), candle's ops otherwise; differentiable either
/// way.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let a = Tensor::new(&[1f32, -2., 3.], &Device::Cpu)?;
/// let b = Tensor::new(&[1f32, 1., -4.], &Device::Cpu)?;
/// let y = ikd_kernels::add_relu(&a, &b, &Default::default())?;
/// assert_eq!(y.to_vec1::<f32>()?, vec![2., 0., 0.]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn add_relu(a: &Tensor, b: &Tensor, policy: &KernelPolicy) -> Result<Tensor> {
    if !policy.applies(&[a, b]) {
        return (a + b)?.relu();
    }
    a.contiguous()?.apply_op2(&b.contiguous()?, AddReluOp)
}

/// Nearest-neighbour upsampling of `(N, C, H, W)` by an integer factor; backward sums each
/// `factor × factor` block.
#[derive(Debug, Clone, Copy)]
struct UpsampleOp {
    factor: usize,
}

impl UpsampleOp {
    fn fwd<T: Float>(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let &[n, c, h, w] = l.dims() else {
            candle_core::bail!("upsample: expects (N, C, H, W), got {:?}", l.dims())
        };
        let x = slice::<T>(s, l, "upsample")?;
        let f = self.factor;
        let (ho, wo) = (h * f, w * f);
        let mut y = vec![T::ZERO; x.len() * f * f];
        let plane = |(yp, xp): (&mut [T], &[T])| {
            for (r, xrow) in xp.chunks(w).enumerate() {
                let first = &mut yp[r * f * wo..(r * f + 1) * wo];
                for (o, &v) in first.chunks_mut(f).zip(xrow) {
                    o.fill(v);
                }
                for k in 1..f {
                    yp.copy_within(r * f * wo..(r * f + 1) * wo, (r * f + k) * wo);
                }
            }
        };
        if y.len() >= MIN_PAR {
            y.par_chunks_mut(ho * wo).zip(x.par_chunks(h * w)).for_each(plane);
        } else {
            y.chunks_mut(ho * wo).zip(x.chunks(h * w)).for_each(plane);
        }
        Ok((T::to_cpu_storage_owned(y), Shape::from((n, c, ho, wo))))
    }

    fn bwd_typed<T: Float>(&self, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let f = self.factor;
        let wo = w * f;
        let dx = with_cpu::<T, _>(dy, |g| {
            let mut dx = vec![T::ZERO; g.len() / (f * f)];
            let plane = |(dp, gp): (&mut [T], &[T])| {
                for (r, drow) in dp.chunks_mut(w).enumerate() {
                    for k in 0..f {
                        let grow = &gp[(r * f + k) * wo..(r * f + k + 1) * wo];
                        for (d, block) in drow.iter_mut().zip(grow.chunks(f)) {
                            for &v in block {
                                *d += v;
                            }
                        }
                    }
                }
            };
            if g.len() >= MIN_PAR {
                dx.par_chunks_mut(h * w).zip(g.par_chunks(h * w * f * f)).for_each(plane);
            } else {
                dx.chunks_mut(h * w).zip(g.chunks(h * w * f * f)).for_each(plane);
            }
            Ok(dx)
        })?;
        Ok(tensor::<T>(dx, x.shape().clone()))
    }
}

impl candle_core::CustomOp1 for UpsampleOp {
    fn name(&self) -> &'static str {
        "ikd-upsample-nearest"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        match s {
            CpuStorage::F32(_) => self.fwd::<f32>(s, l),
            CpuStorage::F64(_) => self.fwd::<f64>(s, l),
            _ => Err(crate::cpu::unsupported_dtype("ikd upsample", s)),
        }
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(match x.dtype() {
            DType::F32 => self.bwd_typed::<f32>(x, grad)?,
            _ => self.bwd_typed::<f64>(x, grad)?,
        }))
    }
}

/// Nearest-neighbour upsampling of `x (N, C, H, W)` by `factor` (each pixel becomes a
/// `factor × factor` block), differentiable. The CPU kernel where `policy`
/// [applies](KernelPolicy::applies); elsewhere broadcast + reshape, whose backward pass (a sum
/// over the broadcast dimensions) accumulates correctly, unlike candle's `upsample_nearest2d`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[[[[1f32, 2.]]]], &Device::Cpu)?;
/// let y = ikd_kernels::upsample_nearest(&x, 2, &Default::default())?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, vec![1., 1., 2., 2., 1., 1., 2., 2.]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn upsample_nearest(x: &Tensor, factor: usize, policy: &KernelPolicy) -> Result<Tensor> {
    if factor == 1 {
        return Ok(x.clone());
    }
    let (n, c, h, w) = x.dims4()?;
    if factor == 0 {
        candle_core::bail!("upsample: the factor must be at least 1")
    }
    if !policy.applies(&[x]) {
        return x
            .reshape((n, c, h, 1, w, 1))?
            .broadcast_as((n, c, h, factor, w, factor))?
            .reshape((n, c, h * factor, w * factor));
    }
    x.contiguous()?.apply_op1(UpsampleOp { factor })
}
