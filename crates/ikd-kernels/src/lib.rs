//! Fast CPU kernels for the operations HRNet spends its time in, as candle custom ops with
//! their own backward pass.
//!
//! candle 0.11's CPU backend runs a convolution as an NCHW→NHWC copy plus a scalar im2col loop
//! and its input gradient as a direct `conv_transpose2d` loop; train-mode batch norm is a chain
//! of a dozen elementwise ops and reductions. The kernels here replace them on the CPU device
//! (f32 and f64; other devices and dtypes keep candle's ops):
//!
//! - [`conv2d`]: any kernel size, stride and padding (HRNet uses 3×3 stride 1 and 2, 1×1 stride
//!   1). 3×3 stride-1 f32 convolutions on AVX-512 CPUs run as Winograd's F(2×2, 3×3) (2.25×
//!   fewer multiplications, [`set_winograd`]), forward and input gradient, and as F(4×4, 3×3)
//!   (4× fewer; weight gradient too) on images from [`WINOGRAD_F43_MIN_SIDE`] pixels whose
//!   width is a multiple of 16, with [`WINOGRAD_F43_MIN_CHANNELS`] channels or more
//!   ([`set_winograd_f43`]); everything else as
//!   im2col by row copies, then one packed matrix product per image (the `gemm` crate). The
//!   backward pass computes the input gradient as `Wᵀ·dY` scattered back by col2im (or, for
//!   "same" convolutions, as the convolution of dY with the flipped kernel) and the weight
//!   gradient as a matrix product of dY and the im2col matrix (3×3 stride-1 f32 ones on images
//!   of at least [`WINOGRAD_WEIGHT_GRAD_MIN_SIDE`] pixels by Winograd too:
//!   [`set_winograd_weight_grad`]). A 1×1 stride-1
//!   convolution needs no im2col at all.
//! - [`conv2d_affine`]: a convolution followed by eval-mode batch norm (+ ReLU) in one op.
//! - [`batch_norm_train`]: training-mode batch norm with an optional fused ReLU, forward and
//!   backward each two passes over the data, statistics accumulated in f64.
//! - [`channel_affine`]: `x·scale + shift` per channel with an optional fused ReLU (eval-mode
//!   batch norm).
//! - [`add_relu`]: `relu(a + b)` in one pass (a residual block's output); [`upsample_nearest`]
//!   by an integer factor (the fuse layers), its backward a sum over each block.
//!
//! Work is split over images (a batch of 2 keeps 2 cores busy without synchronisation) or,
//! for a single image, inside the matrix products, on rayon's global pool. Each kernel has
//! gradient tests against candle's reference ops and central finite differences
//! (`ikd-hrnet`'s `tests/it/kernels.rs`). [`set_enabled`] switches them off to compare with candle's ops.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{CpuStorage, DType, Layout, Result, Shape, Storage, Tensor, WithDType};
use rayon::prelude::*;

mod batch_norm;
mod conv;
mod elementwise;
mod gemm;
mod winograd;

pub use batch_norm::{batch_norm_train, channel_affine, BatchStats};
pub use conv::{conv2d, conv2d_affine};
pub use elementwise::{add_relu, upsample_nearest};
pub use winograd::{
    set_winograd, set_winograd_f43, set_winograd_weight_grad, winograd_enabled,
    winograd_f43_enabled, winograd_weight_grad_enabled, WINOGRAD_F43_MIN_CHANNELS,
    WINOGRAD_F43_MIN_SIDE, WINOGRAD_WEIGHT_GRAD_MIN_SIDE,
};

/// A process-wide on/off switch: on by default, set by its `set_…` function, and turned off for
/// good by its environment variable set to `0` (read once, at the first query).
pub(crate) struct Switch {
    on: AtomicBool,
    env: &'static str,
    env_off: std::sync::OnceLock<bool>,
}

impl Switch {
    pub(crate) const fn new(env: &'static str) -> Self {
        Self { on: AtomicBool::new(true), env, env_off: std::sync::OnceLock::new() }
    }

    pub(crate) fn set(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }

    /// Set on, and not turned off by the environment.
    pub(crate) fn on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
            && !*self.env_off.get_or_init(|| std::env::var(self.env).is_ok_and(|v| v == "0"))
    }
}

static ENABLED: Switch = Switch::new("IKD_CPU_KERNELS");

/// Turns the CPU kernels on or off for the whole process (default on). Off, every operation
/// takes candle's own ops: useful to compare speed or results.
///
/// ```
/// ikd_kernels::set_enabled(false);
/// assert!(!ikd_kernels::enabled());
/// ikd_kernels::set_enabled(true);
/// ```
pub fn set_enabled(on: bool) {
    ENABLED.set(on);
}

/// Whether the CPU kernels are on (see [`set_enabled`]; `IKD_CPU_KERNELS=0` in the environment
/// also turns them off).
///
/// ```
/// assert!(ikd_kernels::enabled() || std::env::var("IKD_CPU_KERNELS").is_ok());
/// ```
pub fn enabled() -> bool {
    ENABLED.on()
}

/// Whether the kernels handle these tensors: CPU device, f32 or f64, and [`enabled`].
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// let x = Tensor::zeros((1, 2, 3, 3), DType::F32, &Device::Cpu)?;
/// assert_eq!(ikd_kernels::applies(&[&x]), ikd_kernels::enabled());
/// let h = Tensor::zeros((1, 2, 3, 3), DType::F16, &Device::Cpu)?;
/// assert!(!ikd_kernels::applies(&[&h]));
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn applies(ts: &[&Tensor]) -> bool {
    enabled()
        && ts.iter().all(|t| t.device().is_cpu())
        && ts.windows(2).all(|w| w[0].dtype() == w[1].dtype())
        && ts.first().is_some_and(|t| matches!(t.dtype(), DType::F32 | DType::F64))
}

/// A per-channel affine map with an optional ReLU, `y = max(x·scale[o] + shift[o], 0)`, applied
/// to a convolution's output while it is in cache (eval-mode batch norm).
pub(crate) struct Affine<'a, T> {
    pub scale: &'a [T],
    pub shift: &'a [T],
    pub relu: bool,
}

impl<T: Float> Affine<'_, T> {
    /// Applies the map to the `(n, o, p)` array `y` in place, planes split over the pool.
    pub(crate) fn apply(&self, y: &mut [T], p: usize) {
        let o = self.scale.len();
        y.par_chunks_mut(p.max(1)).enumerate().for_each(|(i, plane)| {
            let (a, b) = (self.scale[i % o], self.shift[i % o]);
            for v in plane.iter_mut() {
                let t = *v * a + b;
                *v = if self.relu { relu(t) } else { t };
            }
        });
    }
}

/// The float types the kernels run on.
pub(crate) trait Float: WithDType + gemm::GemmScalar {
    /// Runs `f` on this thread's two scratch buffers of at least `a` and `b` elements. Their
    /// contents are whatever the last user left: callers overwrite before they read.
    fn with_scratch<R>(a: usize, b: usize, f: impl FnOnce(&mut [Self], &mut [Self]) -> R) -> R;
    /// A 3×3, stride 1, padding 1 convolution by Winograd's F(2×2, 3×3), where this type and
    /// CPU have that path (f32 with AVX-512F); `None` otherwise.
    fn winograd3x3(
        x: &[Self],
        w: &[Self],
        d: &winograd::Dims,
        epi: Option<&Affine<'_, Self>>,
    ) -> Option<Vec<Self>>;
    /// The input gradient of that convolution (from `dy` and the weight `w`) on the Winograd
    /// path; `None` where there is none.
    fn winograd3x3_input_grad(dy: &[Self], w: &[Self], d: &winograd::Dims) -> Option<Vec<Self>>;
    /// The weight gradient `(O, C, 3, 3)` of that convolution on the Winograd path; `None`
    /// where there is none.
    fn winograd3x3_weight_grad(x: &[Self], dy: &[Self], d: &winograd::Dims) -> Option<Vec<Self>>;
}

macro_rules! float {
    ($t:ty, $key:ident, $wino:expr, $wino_dx:expr, $wino_dw:expr) => {
        thread_local! {
            static $key: std::cell::RefCell<(Vec<$t>, Vec<$t>)> = const {
                std::cell::RefCell::new((Vec::new(), Vec::new()))
            };
        }
        impl Float for $t {
            fn with_scratch<R>(
                a: usize,
                b: usize,
                f: impl FnOnce(&mut [Self], &mut [Self]) -> R,
            ) -> R {
                $key.with(|cell| {
                    // A re-entrant call (none today) gets fresh buffers instead of a panic.
                    let Ok(mut bufs) = cell.try_borrow_mut() else {
                        return f(&mut vec![0.; a], &mut vec![0.; b]);
                    };
                    let (x, y) = &mut *bufs;
                    if x.len() < a {
                        x.resize(a, 0.);
                    }
                    if y.len() < b {
                        y.resize(b, 0.);
                    }
                    f(&mut x[..a], &mut y[..b])
                })
            }
            fn winograd3x3(
                x: &[Self],
                w: &[Self],
                d: &winograd::Dims,
                epi: Option<&Affine<'_, Self>>,
            ) -> Option<Vec<Self>> {
                ($wino)(x, w, d, epi)
            }
            fn winograd3x3_input_grad(
                dy: &[Self],
                w: &[Self],
                d: &winograd::Dims,
            ) -> Option<Vec<Self>> {
                ($wino_dx)(dy, w, d)
            }
            fn winograd3x3_weight_grad(
                x: &[Self],
                dy: &[Self],
                d: &winograd::Dims,
            ) -> Option<Vec<Self>> {
                ($wino_dw)(x, dy, d)
            }
        }
    };
}

float!(f32, SCRATCH_F32, winograd::conv3x3, winograd::input_grad3x3, winograd::weight_grad3x3);
float!(
    f64,
    SCRATCH_F64,
    |_: &[f64], _: &[f64], _: &winograd::Dims, _: Option<&Affine<'_, f64>>| None,
    |_: &[f64], _: &[f64], _: &winograd::Dims| None,
    |_: &[f64], _: &[f64], _: &winograd::Dims| None
);

/// `max(t, 0)`; anything not above 0 (NaN too) becomes 0, in every kernel alike.
#[inline]
pub(crate) fn relu<T: Float>(t: T) -> T {
    if t > T::ZERO {
        t
    } else {
        T::ZERO
    }
}

/// One chunk of a [`filled`] output, written front to back; it counts what was written so that
/// [`filled`] can check the chunk is complete.
pub(crate) struct Sink<'a, T> {
    buf: &'a mut [MaybeUninit<T>],
    n: usize,
}

impl<T: Copy> Sink<'_, T> {
    /// Appends `f(a[i])` for each `a[i]` (as many as the chunk still has room for).
    pub fn map(&mut self, a: &[T], f: impl Fn(T) -> T) {
        let rest = &mut self.buf[self.n..];
        let k = rest.len().min(a.len());
        for (o, &x) in rest[..k].iter_mut().zip(&a[..k]) {
            o.write(f(x));
        }
        self.n += k;
    }

    /// Appends `f(a[i], b[i])` for each pair (as many as the chunk still has room for).
    pub fn map2(&mut self, a: &[T], b: &[T], f: impl Fn(T, T) -> T) {
        let rest = &mut self.buf[self.n..];
        let k = rest.len().min(a.len()).min(b.len());
        for ((o, &x), &y) in rest[..k].iter_mut().zip(&a[..k]).zip(&b[..k]) {
            o.write(f(x, y));
        }
        self.n += k;
    }
}

/// A vector of `len` elements whose chunk `i` (`chunk` elements; the last may be shorter) is
/// written by `f(i, sink)`, over rayon's pool (at least `min_chunks` per task) where `par`,
/// without zero-filling it first: the zero fill of outputs that are written in full anyway
/// showed as a few per cent of a training step. Panics if `f` leaves a chunk short.
#[allow(unsafe_code)]
pub(crate) fn filled<T: Copy + Send>(
    len: usize,
    chunk: usize,
    (par, min_chunks): (bool, usize),
    f: impl Fn(usize, &mut Sink<'_, T>) + Sync + Send,
) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    let run = |(i, buf): (usize, &mut [MaybeUninit<T>])| {
        let mut sink = Sink { buf, n: 0 };
        f(i, &mut sink);
        assert_eq!(sink.n, sink.buf.len(), "kernels: output chunk {i} left short");
    };
    let out = &mut v.spare_capacity_mut()[..len];
    if par {
        out.par_chunks_mut(chunk.max(1)).with_min_len(min_chunks.max(1)).enumerate().for_each(run);
    } else {
        out.chunks_mut(chunk.max(1)).enumerate().for_each(run);
    }
    // SAFETY: every chunk of the first `len` elements was written in full (checked above; a
    // panic there leaves the vector empty)
    unsafe { v.set_len(len) };
    v
}

/// The error of a kernel's `cpu_fwd` called on a dtype other than f32 and f64.
pub(crate) fn unsupported_dtype(op: &str, s: &CpuStorage) -> candle_core::Error {
    let dtype = candle_core::backend::BackendStorage::dtype(s);
    candle_core::Error::Msg(format!("{op}: f32 or f64 only, got {dtype:?}")).bt()
}

/// A contiguous CPU slice of a tensor's storage.
pub(crate) fn slice<'a, T: Float>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [T]> {
    let data = T::cpu_storage_as_slice(s)?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what}: expects a contiguous tensor"),
    }
}

/// Reads a tensor's CPU data (made contiguous first) and hands it to `f`.
pub(crate) fn with_cpu<T: Float, R>(t: &Tensor, f: impl FnOnce(&[T]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => f(slice(s, layout, "ikd kernel")?),
        _ => candle_core::bail!("ikd kernel: expects a CPU tensor"),
    }
}

/// A new CPU tensor without gradient history.
pub(crate) fn tensor<T: Float>(data: Vec<T>, shape: impl Into<Shape>) -> Tensor {
    Tensor::from_storage(
        Storage::Cpu(T::to_cpu_storage_owned(data)),
        shape,
        candle_core::op::BackpropOp::none(),
        false,
    )
}

/// Runs `f` on a thread of rayon's global pool (directly when already on one).
///
/// The kernels split each operation over the pool's threads. Called from outside the pool,
/// every operation hands its work to the pool and puts the caller to sleep until it is done;
/// a whole forward pass or training step run inside the pool pays that hand-over once.
/// `ikd_hrnet::HrNet::forward_t` and the engine's training step use it.
///
/// ```
/// let on_pool = ikd_kernels::in_pool(|| rayon::current_thread_index().is_some());
/// assert!(on_pool);
/// ```
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    let mut out = None;
    rayon::scope(|_| out = Some(f()));
    match out {
        Some(r) => r,
        None => unreachable!("rayon::scope runs its closure before returning"),
    }
}

/// Number of threads the kernels split work over.
pub(crate) fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// The gradient through a ReLU from its output: `dy` where `y > 0`, else 0 (PyTorch's rule).
pub(crate) fn masked<T: Float>(dy: &[T], y: &[T]) -> Vec<T> {
    dy.iter().zip(y).map(|(&g, &v)| if v > T::ZERO { g } else { T::ZERO }).collect()
}

/// Sum of a slice in f64 with eight independent accumulators (vectorises).
#[inline]
pub(crate) fn sum_f64<T: Float>(xs: &[T]) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v.to_f64();
        }
    }
    acc.iter().sum::<f64>() + rest.iter().map(|v| v.to_f64()).sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_writes_every_chunk_in_order_and_rejects_a_short_one() {
        let src: Vec<f32> = (0..100).map(|i| i as f32).collect();
        for par in [false, true] {
            let v = filled(100, 7, (par, 2), |i, o| {
                let r = i * 7..((i + 1) * 7).min(100);
                o.map2(&src[r.clone()], &src[r], |a, b| a + b);
            });
            assert_eq!(v, src.iter().map(|x| 2. * x).collect::<Vec<_>>());
        }
        // a chunk left one element short panics instead of exposing an unwritten element
        let short = std::panic::catch_unwind(|| {
            filled(10, 5, (false, 1), |i, o| o.map(&src[i * 5..i * 5 + 4], |a| a))
        });
        assert!(short.is_err());
    }
}
