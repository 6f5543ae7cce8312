//! Batch norm (training mode, with an optional fused ReLU) and the per-channel affine map of
//! eval mode, forward and backward over `(N, C, H, W)` data.

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu::{masked, slice, sum_f64, tensor, with_cpu, Float, Sink};
use crate::KernelPolicy;

/// Per-channel batch statistics of a training-mode batch norm, detached: f64 from the CPU
/// kernel (which sums in f64), the computation's dtype from candle's ops.
#[derive(Debug, Clone)]
pub struct BatchStats {
    /// Mean over `N·H·W`, shape `(C)`.
    pub mean: Tensor,
    /// Biased variance (divided by `N·H·W`), shape `(C)`: the one the batch is normalised with.
    pub var: Tensor,
    /// `N·H·W`.
    pub count: usize,
}

impl BatchStats {
    /// The unbiased variance (divided by `N·H·W − 1`), the one PyTorch's running estimate
    /// follows.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// let (mean, var) = (Tensor::new(&[0f64], &Device::Cpu)?, Tensor::new(&[1f64], &Device::Cpu)?);
    /// let s = ikd_kernels::BatchStats { mean, var, count: 4 };
    /// assert_eq!(s.unbiased_var()?.to_vec1::<f64>()?, vec![4. / 3.]);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn unbiased_var(&self) -> Result<Tensor> {
        &self.var * (self.count as f64 / (self.count as f64 - 1.))
    }
}

/// Rough number of elements below which splitting work over threads costs more than it saves.
const MIN_PAR: usize = 16 * 1024;

fn dims(l: &Layout) -> Result<(usize, usize, usize)> {
    match l.dims() {
        &[n, c, h, w] => Ok((n, c, h * w)),
        d => candle_core::bail!("batch-norm: expects (N, C, H, W), got {d:?}"),
    }
}

/// `f(c, chunk)` over the `N` chunks of length `hw` of channel `c`, summed.
fn channel_sum<T: Float>(
    x: &[T],
    n: usize,
    c: usize,
    hw: usize,
    ch: usize,
    f: impl Fn(&[T], usize) -> f64,
) -> f64 {
    (0..n).map(|i| f(&x[(i * c + ch) * hw..(i * c + ch + 1) * hw], i)).sum()
}

/// Runs `f(channel) -> R` for every channel, in parallel when the data is large.
fn per_channel<R: Send>(c: usize, total: usize, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    if total >= MIN_PAR {
        (0..c).into_par_iter().map(f).collect()
    } else {
        (0..c).map(f).collect()
    }
}

/// A new `(N, C, HW)` tensor of `len` elements whose plane `i` (channel `i % C`) `f(channel,
/// i, sink)` writes in full (see [`crate::cpu::filled`]).
fn planes<T: Float>(
    len: usize,
    c: usize,
    hw: usize,
    f: impl Fn(usize, usize, &mut Sink<'_, T>) + Sync + Send,
) -> Vec<T> {
    let min = (MIN_PAR / 4 / hw.max(1)).max(1);
    crate::cpu::filled(len, hw, (len >= MIN_PAR, min), |i, o| f(i % c, i, o))
}

/// Sum of `a[i]·b[i]` in f64, eight accumulators.
fn dot_f64<T: Float>(a: &[T], b: &[T]) -> f64 {
    let mut acc = [0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let rest: f64 =
        ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x.to_f64() * y.to_f64()).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k].to_f64() * y[k].to_f64();
        }
    }
    acc.iter().sum::<f64>() + rest
}

/// Sum of `(a[i] − m)²` in f64, eight accumulators.
fn sq_dev_f64<T: Float>(a: &[T], m: f64) -> f64 {
    let mut acc = [0f64; 8];
    let ca = a.chunks_exact(8);
    let rest: f64 = ca.remainder().iter().map(|x| (x.to_f64() - m).powi(2)).sum();
    for x in ca {
        for k in 0..8 {
            let d = x[k].to_f64() - m;
            acc[k] += d * d;
        }
    }
    acc.iter().sum::<f64>() + rest
}

/// A per-channel mean split into two floats, `hi + lo` = the f64 mean to about twice the
/// working precision: `(x − hi) − lo` is then the centred value to within an ulp of itself
/// (`x − hi` is exact where `x` is within a factor 2 of `hi`), where `x − mean` with the mean
/// rounded once, or `x·a + (b − mean·a)`, loses `|mean| / std` ulps to cancellation — as much
/// as 1e-4 relative on the feature maps of a trained network (see `normalize`).
#[derive(Clone, Copy)]
struct SplitMean<T> {
    hi: T,
    lo: T,
}

impl<T: Float> SplitMean<T> {
    fn new(mean: f64) -> Self {
        let hi = T::from_f64(mean);
        Self { hi, lo: T::from_f64(mean - hi.to_f64()) }
    }
    #[inline(always)]
    fn centre(self, x: T) -> T {
        (x - self.hi) - self.lo
    }
}

/// `y = (x − mean[c])·scale[c] + beta[c]`, then ReLU if asked: training-mode batch norm's
/// forward map, centred first (PyTorch's CPU kernel folds the mean into the shift,
/// `x·scale + (beta − mean·scale)`, which cancels where the mean is large against the spread).
fn normalize<T: Float>(
    x: &[T],
    (c, hw): (usize, usize),
    mean: &[SplitMean<T>],
    scale: &[T],
    beta: &[T],
    relu: bool,
) -> Vec<T> {
    planes(x.len(), c, hw, |ch, i, o| {
        let (m, a, b) = (mean[ch], scale[ch], beta[ch]);
        let xi = &x[i * hw..(i + 1) * hw];
        if relu {
            o.map(xi, |v| crate::cpu::relu(m.centre(v) * a + b));
        } else {
            o.map(xi, |v| m.centre(v) * a + b);
        }
    })
}

/// `y = x·scale[c] + shift[c]`, then ReLU if asked.
fn affine<T: Float>(x: &[T], c: usize, hw: usize, scale: &[T], shift: &[T], relu: bool) -> Vec<T> {
    planes(x.len(), c, hw, |ch, i, o| {
        let (a, b) = (scale[ch], shift[ch]);
        let xi = &x[i * hw..(i + 1) * hw];
        if relu {
            o.map(xi, |v| crate::cpu::relu(v * a + b));
        } else {
            o.map(xi, |v| v * a + b);
        }
    })
}

/// The per-channel mean and biased variance the kernel computed (f64).
#[derive(Debug, Clone)]
struct Moments {
    mean: Vec<f64>,
    var: Vec<f64>,
}

#[derive(Debug)]
struct BnTrainOp {
    eps: f64,
    relu: bool,
    stats: OnceLock<Moments>,
}

impl BnTrainOp {
    fn fwd<T: Float>(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sg: &CpuStorage,
        lg: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, hw) = dims(lx)?;
        let x = slice::<T>(sx, lx, "batch-norm")?;
        let (gamma, beta) = (slice::<T>(sg, lg, "batch-norm")?, slice::<T>(sb, lb, "batch-norm")?);
        if gamma.len() != c || beta.len() != c {
            candle_core::bail!("batch-norm: {c} channels but {} weights", gamma.len())
        }
        let m = (n * hw) as f64;
        let stats: Vec<(f64, f64)> = per_channel(c, x.len(), |ch| {
            let mean = channel_sum(x, n, c, hw, ch, |s, _| sum_f64(s)) / m;
            let var = channel_sum(x, n, c, hw, ch, |s, _| sq_dev_f64(s, mean)) / m;
            (mean, var)
        });
        let scale: Vec<T> = stats
            .iter()
            .zip(gamma)
            .map(|(&(_, var), g)| T::from_f64(g.to_f64() / (var + self.eps).sqrt()))
            .collect();
        let means: Vec<SplitMean<T>> = stats.iter().map(|s| SplitMean::new(s.0)).collect();
        let y = normalize(x, (c, hw), &means, &scale, beta, self.relu);
        let _ = self.stats.set(Moments {
            mean: stats.iter().map(|s| s.0).collect(),
            var: stats.iter().map(|s| s.1).collect(),
        });
        Ok((T::to_cpu_storage_owned(y), lx.shape().clone()))
    }

    fn bwd_typed<T: Float>(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (n, c, h, w) = x.dims4()?;
        let hw = h * w;
        let stats = self
            .stats
            .get()
            .ok_or_else(|| candle_core::Error::Msg("batch-norm: backward before forward".into()))?;
        let m = (n * hw) as f64;
        let (dx, dgamma, dbeta) = with_cpu::<T, _>(x, |xs| {
            with_cpu::<T, _>(gamma, |gs| {
                with_cpu::<T, _>(dy, |dys| {
                    let g_owned;
                    let g: &[T] = if self.relu {
                        g_owned = with_cpu::<T, _>(y, |ys| Ok(masked(dys, ys)))?;
                        &g_owned
                    } else {
                        dys
                    };
                    // Σ g and Σ g·x̂ per channel, x̂ = (x − mean)·invstd.
                    let sums: Vec<(f64, f64)> = per_channel(c, xs.len(), |ch| {
                        let sg = channel_sum(g, n, c, hw, ch, |s, _| sum_f64(s));
                        let sgx = channel_sum(g, n, c, hw, ch, |s, i| {
                            let off = (i * c + ch) * hw;
                            dot_f64(s, &xs[off..off + hw])
                        });
                        (sg, sgx)
                    });
                    let mut coef = Vec::with_capacity(c);
                    let mut dgamma = Vec::with_capacity(c);
                    let mut dbeta = Vec::with_capacity(c);
                    for (ch, &(sg, sgx)) in sums.iter().enumerate() {
                        let (mean, invstd) =
                            (stats.mean[ch], 1. / (stats.var[ch] + self.eps).sqrt());
                        let sgxhat = invstd * (sgx - mean * sg);
                        dgamma.push(T::from_f64(sgxhat));
                        dbeta.push(T::from_f64(sg));
                        // dx = a·(g − Σg/M − x̂·Σgx̂/M), a = γ·invstd, x̂ = (x − mean)·invstd:
                        // centred before it is scaled (the expanded `a·g + b·x + k` cancels
                        // |mean|/std-fold where the channel's mean is large against its spread)
                        let a = gs[ch].to_f64() * invstd;
                        let (mg, mgx) = (sg / m, sgxhat / m);
                        let k = [a, -a * invstd * mgx, -a * mg].map(T::from_f64);
                        coef.push((SplitMean::<T>::new(mean), k));
                    }
                    let dx = planes(xs.len(), c, hw, |ch, i, o| {
                        let (mean, [a, b, k]) = coef[ch];
                        let r = i * hw..(i + 1) * hw;
                        o.map2(&g[r.clone()], &xs[r], |gv, xv| a * gv + (b * mean.centre(xv) + k));
                    });
                    Ok((dx, dgamma, dbeta))
                })
            })
        })?;
        Ok((tensor(dx, x.shape().clone()), tensor(dgamma, c), tensor(dbeta, c)))
    }
}

impl candle_core::CustomOp3 for BnTrainOp {
    fn name(&self) -> &'static str {
        "ikd-batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        match s1 {
            CpuStorage::F32(_) => self.fwd::<f32>(s1, l1, s2, l2, s3, l3),
            CpuStorage::F64(_) => self.fwd::<f64>(s1, l1, s2, l2, s3, l3),
            _ => Err(crate::cpu::unsupported_dtype("ikd batch-norm", s1)),
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dg, db) = match x.dtype() {
            DType::F32 => self.bwd_typed::<f32>(x, gamma, res, grad)?,
            _ => self.bwd_typed::<f64>(x, gamma, res, grad)?,
        };
        Ok((Some(dx), Some(dg), Some(db)))
    }
}

/// Training-mode batch norm of `x (N, C, H, W)` with the batch's statistics (biased
/// variance), `gamma` and `beta` of length `C`, then a ReLU if `relu`; returns the output and
/// the batch statistics (for the running estimates). Differentiable in `x`, `gamma` and
/// `beta`. The CPU kernel where `policy` [applies](KernelPolicy::applies) (forward and backward
/// two passes over the data each, statistics summed in f64), candle's ops otherwise (f16 and
/// bf16 computed in f32).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use ikd_kernels::KernelPolicy;
/// let x = Tensor::new(&[[[[1f64, 3.]], [[2., 2.]]]], &Device::Cpu)?; // (1, 2, 1, 2)
/// let (g, b) = (Tensor::new(&[1f64, 1.], &Device::Cpu)?, Tensor::new(&[0f64, 0.], &Device::Cpu)?);
/// for p in [KernelPolicy::default(), KernelPolicy::candle()] {
///     let (y, stats) = ikd_kernels::batch_norm_train(&x, &g, &b, 1e-5, false, &p)?;
///     assert_eq!(stats.mean.to_vec1::<f64>()?, vec![2., 2.]);
///     assert_eq!(stats.var.to_vec1::<f64>()?, vec![1., 0.]);
///     let y = y.flatten_all()?.to_vec1::<f64>()?;
///     let expected = [-1., 1., 0., 0.];
///     assert!(y.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-5));
/// }
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
    policy: &KernelPolicy,
) -> Result<(Tensor, BatchStats)> {
    let (n, _, h, w) = x.dims4()?;
    if n * h * w < 2 {
        candle_core::bail!(
            "batch-norm in training mode needs more than one value per channel, got {:?}",
            x.shape()
        )
    }
    if !policy.applies(&[x, gamma, beta]) {
        return candle_batch_norm_train(x, gamma, beta, eps, relu);
    }
    let op = Arc::new(BnTrainOp { eps, relu, stats: OnceLock::new() });
    let boxed: Box<dyn candle_core::CustomOp3 + Send + Sync> = Box::new(ArcOp(op.clone()));
    let y = x.contiguous()?.apply_op3_arc(
        &gamma.contiguous()?,
        &beta.contiguous()?,
        Arc::new(boxed),
    )?;
    let Moments { mean, var } = op
        .stats
        .get()
        .cloned()
        .ok_or_else(|| candle_core::Error::Msg("batch-norm: no statistics".into()))?;
    let (mean, var) = (Tensor::new(mean, x.device())?, Tensor::new(var, x.device())?);
    Ok((y, BatchStats { mean, var, count: n * h * w }))
}

/// [`batch_norm_train`] with candle's ops.
fn candle_batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, BatchStats)> {
    let (n, c, h, w) = x.dims4()?;
    let count = n * h * w;
    let dtype = x.dtype();
    let internal = match dtype {
        DType::F16 | DType::BF16 => DType::F32,
        d => d,
    };
    // Channels first, `(C, N·H·W)` (one copy): every per-channel reduction, in this forward
    // pass and in the backward pass of the per-channel broadcasts, then runs over the last,
    // contiguous dimension, which candle sums with a vectorised loop (reductions over
    // dimensions 0, 2 and 3 of `(N, C, H, W)` take its slow index-by-index path).
    let xt = x.to_dtype(internal)?.transpose(0, 1)?.reshape((c, count))?;
    let mean = (xt.sum_keepdim(1)? / count as f64)?; // (C, 1)
    let centred = xt.broadcast_sub(&mean)?;
    let var = (centred.sqr()?.sum_keepdim(1)? / count as f64)?; // biased, used to normalise
    let stats =
        BatchStats { mean: mean.detach().flatten_all()?, var: var.detach().flatten_all()?, count };
    let inv_std = (var + eps)?.sqrt()?.recip()?;
    let scale = gamma.to_dtype(internal)?.reshape((c, 1))?.mul(&inv_std)?;
    let bias = beta.to_dtype(internal)?.reshape((c, 1))?;
    let yt = centred.broadcast_mul(&scale)?.broadcast_add(&bias)?;
    let y = yt.reshape((c, n, h, w))?.transpose(0, 1)?.contiguous()?.to_dtype(dtype)?;
    Ok((if relu { y.relu()? } else { y }, stats))
}

/// Lets the caller keep a handle on the op (for the statistics) while candle owns it.
struct ArcOp(Arc<BnTrainOp>);

impl candle_core::CustomOp3 for ArcOp {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.0.cpu_fwd(s1, l1, s2, l2, s3, l3)
    }
    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        c: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        self.0.bwd(a, b, c, res, grad)
    }
}

#[derive(Debug, Clone, Copy)]
struct AffineOp {
    relu: bool,
}

impl AffineOp {
    fn fwd<T: Float>(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sa: &CpuStorage,
        la: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c, hw) = dims(lx)?;
        let x = slice::<T>(sx, lx, "channel-affine")?;
        let (a, b) = (slice::<T>(sa, la, "channel-affine")?, slice::<T>(sb, lb, "channel-affine")?);
        if a.len() != c || b.len() != c {
            candle_core::bail!("channel-affine: {c} channels but {} scales", a.len())
        }
        Ok((T::to_cpu_storage_owned(affine(x, c, hw, a, b, self.relu)), lx.shape().clone()))
    }

    fn bwd_typed<T: Float>(
        &self,
        x: &Tensor,
        scale: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (n, c, h, w) = x.dims4()?;
        let (dx, da, db) = with_cpu::<T, _>(x, |xs| {
            with_cpu::<T, _>(scale, |ss| {
                with_cpu::<T, _>(dy, |dys| {
                    let dims = (n, c, h * w);
                    if self.relu {
                        with_cpu::<T, _>(y, |ys| Ok(affine_backward(xs, dims, ss, dys, Some(ys))))
                    } else {
                        Ok(affine_backward(xs, dims, ss, dys, None))
                    }
                })
            })
        })?;
        Ok((tensor(dx, x.shape().clone()), tensor::<T>(da, c), tensor::<T>(db, c)))
    }
}

/// The backward pass of `y = x·scale[c] + shift[c]` (then a ReLU where `y_relu`, the output, is
/// given) on `(N, C, HW)` data: `(dx, d_scale, d_shift)` with `g = dy` (masked by the ReLU),
/// `dx = g·scale`, `d_scale = Σ g·x` and `d_shift = Σ g` per channel, summed in f64.
pub(crate) fn affine_backward<T: Float>(
    x: &[T],
    (n, c, hw): (usize, usize, usize),
    scale: &[T],
    dy: &[T],
    y_relu: Option<&[T]>,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let g_owned;
    let g: &[T] = match y_relu {
        Some(ys) => {
            g_owned = masked(dy, ys);
            &g_owned
        }
        None => dy,
    };
    let sums: Vec<(f64, f64)> = per_channel(c, x.len(), |ch| {
        let sg = channel_sum(g, n, c, hw, ch, |s, _| sum_f64(s));
        let sgx = channel_sum(g, n, c, hw, ch, |s, i| {
            let off = (i * c + ch) * hw;
            dot_f64(s, &x[off..off + hw])
        });
        (sg, sgx)
    });
    let dx = planes(x.len(), c, hw, |ch, i, o| {
        let a = scale[ch];
        o.map(&g[i * hw..(i + 1) * hw], |gv| a * gv);
    });
    let da = sums.iter().map(|s| T::from_f64(s.1)).collect();
    let db = sums.iter().map(|s| T::from_f64(s.0)).collect();
    (dx, da, db)
}

impl candle_core::CustomOp3 for AffineOp {
    fn name(&self) -> &'static str {
        "ikd-channel-affine"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        match s1 {
            CpuStorage::F32(_) => self.fwd::<f32>(s1, l1, s2, l2, s3, l3),
            CpuStorage::F64(_) => self.fwd::<f64>(s1, l1, s2, l2, s3, l3),
            _ => Err(crate::cpu::unsupported_dtype("ikd channel-affine", s1)),
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        _shift: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, da, db) = match x.dtype() {
            DType::F32 => self.bwd_typed::<f32>(x, scale, res, grad)?,
            _ => self.bwd_typed::<f64>(x, scale, res, grad)?,
        };
        Ok((Some(dx), Some(da), Some(db)))
    }
}

/// `x·scale[c] + shift[c]` over the channels of `x (N, C, H, W)`, then a ReLU if `relu`
/// (eval-mode batch norm with its running statistics folded into `scale` and `shift`).
/// Differentiable in all three; the CPU kernel where `policy` [applies](KernelPolicy::applies),
/// candle's ops otherwise.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[[[[1f32, -3.]], [[2., 2.]]]], &Device::Cpu)?;
/// let a = Tensor::new(&[2f32, 1.], &Device::Cpu)?;
/// let b = Tensor::new(&[0f32, -5.], &Device::Cpu)?;
/// let y = ikd_kernels::channel_affine(&x, &a, &b, true, &Default::default())?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, vec![2., 0., 0., 0.]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn channel_affine(
    x: &Tensor,
    scale: &Tensor,
    shift: &Tensor,
    relu: bool,
    policy: &KernelPolicy,
) -> Result<Tensor> {
    if !policy.applies(&[x, scale, shift]) {
        let c = scale.dim(0)?;
        let y = x
            .broadcast_mul(&scale.reshape((1, c, 1, 1))?)?
            .broadcast_add(&shift.reshape((1, c, 1, 1))?)?;
        return if relu { y.relu() } else { Ok(y) };
    }
    x.contiguous()?.apply_op3(&scale.contiguous()?, &shift.contiguous()?, AffineOp { relu })
}
