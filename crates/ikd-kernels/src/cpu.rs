//! What the kernels share: the float types they run on ([`Float`], with per-thread scratch
//! buffers and the Winograd entry points), outputs written without a zero fill ([`filled`]),
//! access to a tensor's CPU data, and small numeric helpers.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, Layout, Result, Shape, Storage, Tensor, WithDType};
use rayon::prelude::*;

use crate::{gemm, winograd, KernelPolicy};

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
    /// The square root.
    fn sqrt(self) -> Self;
    /// The data of a CPU storage of this type, mutably.
    fn cpu_storage_as_mut_slice(s: &mut CpuStorage) -> Result<&mut [Self]>;
    /// A 3×3, stride 1, padding 1 convolution by Winograd's minimal filtering, where this
    /// type, the CPU and `policy` have that path (f32 with AVX-512F or AVX2 + FMA); `None` otherwise.
    fn winograd3x3(
        x: &[Self],
        w: &[Self],
        d: &winograd::Dims,
        epi: Option<&Affine<'_, Self>>,
        policy: &KernelPolicy,
    ) -> Option<Vec<Self>>;
    /// The input gradient of that convolution (from `dy` and the weight `w`) on the Winograd
    /// path; `None` where there is none.
    fn winograd3x3_input_grad(
        dy: &[Self],
        w: &[Self],
        d: &winograd::Dims,
        policy: &KernelPolicy,
    ) -> Option<Vec<Self>>;
    /// The weight gradient `(O, C, 3, 3)` of that convolution on the Winograd path; `None`
    /// where there is none.
    fn winograd3x3_weight_grad(
        x: &[Self],
        dy: &[Self],
        d: &winograd::Dims,
        policy: &KernelPolicy,
    ) -> Option<Vec<Self>>;
}

macro_rules! float {
    ($t:ident, $variant:ident, $key:ident, $wino:expr, $wino_dx:expr, $wino_dw:expr) => {
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
            fn sqrt(self) -> Self {
                $t::sqrt(self)
            }
            fn cpu_storage_as_mut_slice(s: &mut CpuStorage) -> Result<&mut [Self]> {
                match s {
                    CpuStorage::$variant(data) => Ok(data),
                    other => {
                        let got = candle_core::backend::BackendStorage::dtype(&*other);
                        let expected = candle_core::DType::$variant;
                        Err(candle_core::Error::UnexpectedDType {
                            msg: "ikd kernel",
                            expected,
                            got,
                        }
                        .bt())
                    }
                }
            }
            fn winograd3x3(
                x: &[Self],
                w: &[Self],
                d: &winograd::Dims,
                epi: Option<&Affine<'_, Self>>,
                policy: &KernelPolicy,
            ) -> Option<Vec<Self>> {
                ($wino)(x, w, d, epi, policy)
            }
            fn winograd3x3_input_grad(
                dy: &[Self],
                w: &[Self],
                d: &winograd::Dims,
                policy: &KernelPolicy,
            ) -> Option<Vec<Self>> {
                ($wino_dx)(dy, w, d, policy)
            }
            fn winograd3x3_weight_grad(
                x: &[Self],
                dy: &[Self],
                d: &winograd::Dims,
                policy: &KernelPolicy,
            ) -> Option<Vec<Self>> {
                ($wino_dw)(x, dy, d, policy)
            }
        }
    };
}

float!(f32, F32, SCRATCH_F32, winograd::conv3x3, winograd::input_grad3x3, winograd::weight_grad3x3);
float!(
    f64,
    F64,
    SCRATCH_F64,
    |_: &[f64], _: &[f64], _: &winograd::Dims, _: Option<&Affine<'_, f64>>, _: &KernelPolicy| None,
    |_: &[f64], _: &[f64], _: &winograd::Dims, _: &KernelPolicy| None,
    |_: &[f64], _: &[f64], _: &winograd::Dims, _: &KernelPolicy| None
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

/// A contiguous CPU slice of a tensor's storage, mutably.
pub(crate) fn slice_mut<'a, T: Float>(
    s: &'a mut CpuStorage,
    l: &Layout,
    what: &str,
) -> Result<&'a mut [T]> {
    let data = T::cpu_storage_as_mut_slice(s)?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut data[a..b]),
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
