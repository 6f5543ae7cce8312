//! # ikd-kernels
//!
//! Fast CPU kernels for the layers of convolutional networks on
//! [candle](https://github.com/huggingface/candle) 0.11 (above all HRNet), as candle custom ops
//! with their own backward pass, behind layer functions that fall back to candle's ops
//! elsewhere.
//!
//! candle 0.11's CPU backend runs a convolution as an NCHW→NHWC copy plus a scalar im2col loop
//! and its input gradient as a direct `conv_transpose2d` loop; train-mode batch norm is a chain
//! of a dozen elementwise ops and reductions. The kernels here replace them on the CPU device
//! (f32 and f64; other devices and dtypes keep candle's ops):
//!
//! - [`conv2d`]: any kernel size, stride and padding. 3×3 stride-1 f32 convolutions on AVX-512
//!   and AVX2 + FMA CPUs run as Winograd's F(2×2, 3×3) (2.25× fewer multiplications), forward and input
//!   gradient, and as F(4×4, 3×3) (4× fewer; weight gradient too) on images from
//!   [`WINOGRAD_F43_MIN_SIDE`] pixels whose width is a multiple of 16, with
//!   [`WINOGRAD_F43_MIN_CHANNELS`] channels or more; everything else as im2col by row copies,
//!   then one packed matrix product per image (the `gemm` crate). The backward pass computes
//!   the input gradient as `Wᵀ·dY` scattered back by col2im (or, for "same" convolutions, as the
//!   convolution of dY with the flipped kernel) and the weight gradient as a matrix product of
//!   dY and the im2col matrix (3×3 stride-1 f32 ones on images of at least
//!   [`WINOGRAD_WEIGHT_GRAD_MIN_SIDE`] pixels by Winograd too). A 1×1 stride-1 convolution
//!   needs no im2col at all.
//! - [`conv2d_affine`]: a convolution followed by eval-mode batch norm (+ ReLU) in one op.
//! - [`batch_norm_train`]: training-mode batch norm with an optional fused ReLU, forward and
//!   backward each two passes over the data, statistics accumulated in f64.
//! - [`channel_affine`]: `x·scale + shift` per channel with an optional fused ReLU (eval-mode
//!   batch norm).
//! - [`add_relu`]: `relu(a + b)` in one pass (a residual block's output); [`upsample_nearest`]
//!   by an integer factor, its backward a sum over each block.
//! - [`adamw_update`]: AdamW's update of a parameter and its moments in place, bit-identical to
//!   candle's tensor ops.
//!
//! Which of them run is a [`KernelPolicy`] value every function takes — no process-wide
//! switch: two policies side by side compare paths in one process. The ops carry their policy
//! into the backward pass.
//!
//! Work is split over images (a batch of 2 keeps 2 cores busy without synchronisation) or,
//! for a single image, inside the matrix products, on rayon's global pool; [`in_pool`] runs a
//! whole forward pass or training step on that pool, and [`tune_process`] sets a binary's
//! threads and allocator up for it. Each kernel has gradient tests against
//! candle's ops and central finite differences (`tests/it`).
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use ikd_kernels::KernelPolicy;
//!
//! let x = Tensor::randn(0f32, 1., (2, 16, 32, 32), &Device::Cpu)?;
//! let w = Tensor::randn(0f32, 0.1, (16, 16, 3, 3), &Device::Cpu)?;
//! let fast = ikd_kernels::conv2d(&x, &w, 1, 1, &KernelPolicy::default())?;
//! let reference = ikd_kernels::conv2d(&x, &w, 1, 1, &KernelPolicy::candle())?;
//! let err = (fast - reference)?.abs()?.max_all()?.to_scalar::<f32>()?;
//! assert!(err < 1e-4);
//! # Ok::<(), candle_core::Error>(())
//! ```

mod adamw;
mod batch_norm;
mod conv;
mod cpu;
mod elementwise;
mod gemm;
mod policy;
mod process;
mod winograd;

pub use adamw::{adamw_update, AdamWStep};
pub use batch_norm::{batch_norm_train, channel_affine, BatchStats};
pub use conv::{conv2d, conv2d_affine};
pub use elementwise::{add_relu, upsample_nearest};
pub use policy::{KernelPolicy, Simd};
pub use process::tune_process;
pub use winograd::{
    WINOGRAD_F43_MIN_CHANNELS, WINOGRAD_F43_MIN_SIDE, WINOGRAD_WEIGHT_GRAD_MIN_SIDE,
};

/// The CPU's model name (`model name` in `/proc/cpuinfo`; `unknown` where there is none), for
/// reports beside [`KernelPolicy::path`].
///
/// ```
/// assert!(!ikd_kernels::cpu_model().is_empty());
/// ```
pub fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
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

/// The README's usage example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
