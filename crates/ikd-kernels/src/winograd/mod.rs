//! 3×3 stride-1 convolutions with padding 1 by Winograd's minimal filtering
//! ([Lavin & Gray 2016](https://arxiv.org/abs/1509.09308)): F(2×2, 3×3) ([`f2x2`]) on every
//! image, F(4×4, 3×3) ([`f4x4`]) on the larger ones, each one source for AVX-512F and for
//! AVX2 + FMA ([`simd`] holds the vector operations of both and what the two algorithms
//! share). This module picks the path and holds the portable parts: the sizes, the
//! thresholds, the zero-padded input and the reusable transform buffer.
//!
//! Each output tile comes from a larger input tile: `Y = Aᵀ[(G·g·Gᵀ) ⊙ (Bᵀ·d·B)]A`. With
//! `U = G·g·Gᵀ` (the filters) and `V = Bᵀ·d·B` (the input tiles), the convolution is one
//! independent product `M[ξ] (O×T) = U[ξ] (O×C) · V[ξ] (C×T)` per tile element `ξ` over the
//! tiles `T`, followed by the output transform. f32 only, on x86-64 CPUs with AVX-512F or
//! AVX2 + FMA, the widest the CPU has up to the policy's [`KernelPolicy::simd`] (checked at
//! run time); everything else takes the im2col path.

use crate::cpu::Affine;
use crate::KernelPolicy;

#[cfg(target_arch = "x86_64")]
mod f2x2;
#[cfg(target_arch = "x86_64")]
mod f4x4;
#[cfg(target_arch = "x86_64")]
mod simd;

/// The smallest image side (height and width) whose 3×3 weight gradients take the Winograd
/// path; smaller images sum them directly.
///
/// Why: where a tap of a filter only ever meets zero inputs (ReLU zeros along a border, frequent
/// on small maps, where each tap sees few positions), the direct sum is exactly 0, while
/// Winograd's transforms mix neighbouring pixels and leave rounding noise (a few ulp of the
/// filter's largest gradient entries); Adam divides each entry by its own running magnitude, so that noise
/// becomes a step of up to the learning rate (on the PyTorch trajectory fixture's 2-pixel maps:
/// 1536 of 9216 entries exactly 0 directly, noise with Winograd, weights 3.6e-4 apart after one
/// step at lr 1e-3). And the fixture's hard-pixel selection is sensitive: with the Winograd
/// weight gradient from 16 pixels on, loss and margins of all 12 steps stay within 1.4e-6 of
/// PyTorch (1.0e-6 summed directly); from 8 pixels on, one pixel's selection flips at step 7
/// (margin 1.2e-4 off, up to 5.6e-3 later). Winograd's gain is also smallest on small maps.
///
/// ```
/// // hrnet_w32 at 256²: branches of 64, 32 and 16 pixels take it, the 8-pixel branch does not
/// assert_eq!(ikd_kernels::WINOGRAD_WEIGHT_GRAD_MIN_SIDE, 16);
/// ```
pub const WINOGRAD_WEIGHT_GRAD_MIN_SIDE: usize = 16;

/// The smallest image side on which 3×3 stride-1 convolutions take F(4×4, 3×3) (forward, input
/// and weight gradient; see [`KernelPolicy::winograd_f43`]).
///
/// ```
/// assert_eq!(ikd_kernels::WINOGRAD_F43_MIN_SIDE, 16);
/// ```
pub const WINOGRAD_F43_MIN_SIDE: usize = 16;

/// The fewest input and output channels with which 3×3 stride-1 convolutions take
/// F(4×4, 3×3). With fewer, its larger transforms cost what its products save: fwd + bwd at
/// 16² and 32² measured the same as F(2×2, 3×3) with 4 and 8 channels, 1.5× faster with 16.
/// (It also keeps the PyTorch training-trajectory fixture, whose 16-pixel maps have at most 8
/// channels on one side, on F(2×2, 3×3) bit for bit.)
///
/// ```
/// assert_eq!(ikd_kernels::WINOGRAD_F43_MIN_CHANNELS, 16);
/// ```
pub const WINOGRAD_F43_MIN_CHANNELS: usize = 16;

/// The narrowest vector set the Winograd kernels have code for.
pub(crate) const MIN_SIMD: crate::Simd = crate::Simd::Avx2Fma;

/// Runs `$body` with `$s` the token of the policy's vector set (`$p.simd`, already capped
/// by the CPU in [`KernelPolicy::effective`]): AVX-512F or AVX2 + FMA; `None` for others.
#[cfg(target_arch = "x86_64")]
macro_rules! with_isa {
    ($p:expr, |$s:ident| $body:expr) => {
        match $p.simd {
            crate::Simd::Avx512 => <simd::Avx512 as simd::Isa>::new().and_then(|$s| $body),
            crate::Simd::Avx2Fma => <simd::Avx2 as simd::Isa>::new().and_then(|$s| $body),
            crate::Simd::Scalar => None,
        }
    };
}

/// Sizes of a 3×3, stride 1, padding 1 convolution: `x (n, c, h, w)`, weight `(o, c, 3, 3)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
}

impl Dims {
    /// No input or no output.
    fn is_empty(&self) -> bool {
        self.n * self.c * self.h * self.w == 0 || self.o == 0
    }

    /// Whether a convolution of these sizes takes F(4×4, 3×3) where the policy allows it.
    #[cfg(target_arch = "x86_64")]
    fn fits_f43(&self) -> bool {
        self.h >= WINOGRAD_F43_MIN_SIDE
            && self.w >= WINOGRAD_F43_MIN_SIDE
            && self.w.is_multiple_of(16)
            && self.h.is_multiple_of(4)
            && self.c.min(self.o) >= WINOGRAD_F43_MIN_CHANNELS
            && self.n > 0
    }
}

/// The convolution's output `(n, o, h, w)` followed by `epi`, by F(4×4, 3×3) where it fits
/// and `policy` allows it, by F(2×2, 3×3) otherwise; `None` where no Winograd path runs
/// (neither AVX-512F nor AVX2 + FMA within the policy's cap, off in `policy`, or an input too
/// large for 32-bit gather offsets).
pub(crate) fn conv3x3(
    x: &[f32],
    w: &[f32],
    d: &Dims,
    epi: Option<&Affine<'_, f32>>,
    policy: &KernelPolicy,
) -> Option<Vec<f32>> {
    let p = policy.effective();
    if !p.winograd || d.is_empty() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        with_isa!(p, |s| {
            if p.winograd_f43 && d.fits_f43() {
                f4x4::conv3x3(s, x, w, d, epi)
            } else {
                f2x2::conv3x3(s, x, w, d, false, epi)
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (x, w, epi);
        None
    }
}

/// The input gradient `(n, c, h, w)` of the same convolution from its output gradient `dy`: the
/// convolution of `dy` with the flipped, transposed filters (F(2×2, 3×3) reads them straight
/// from `w` in its filter transform, F(4×4, 3×3) from an explicit copy). `None` where
/// [`conv3x3`] would be `None`.
pub(crate) fn input_grad3x3(
    dy: &[f32],
    w: &[f32],
    d: &Dims,
    policy: &KernelPolicy,
) -> Option<Vec<f32>> {
    let p = policy.effective();
    if !p.winograd || d.is_empty() {
        return None;
    }
    let t = Dims { c: d.o, o: d.c, ..*d };
    #[cfg(target_arch = "x86_64")]
    {
        with_isa!(p, |s| {
            if p.winograd_f43 && t.fits_f43() {
                f4x4::conv3x3(s, dy, &flipped_transposed(w, d), &t, None)
            } else {
                f2x2::conv3x3(s, dy, w, &t, true, None)
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (dy, w, t);
        None
    }
}

/// `wf[c][o] = w[o][c]` flipped, for the weight `w (o, c, 3, 3)` (9·O·C floats, next to nothing
/// against the convolution).
#[cfg(target_arch = "x86_64")]
fn flipped_transposed(w: &[f32], d: &Dims) -> Vec<f32> {
    assert_eq!(w.len(), d.o * d.c * 9, "winograd: weight length");
    let mut wf = vec![0f32; w.len()];
    for (o, wo) in w.chunks(d.c * 9).enumerate() {
        for (c, f) in wo.chunks(9).enumerate() {
            let dst = &mut wf[(c * d.o + o) * 9..(c * d.o + o + 1) * 9];
            for (k, v) in f.iter().enumerate() {
                dst[8 - k] = *v;
            }
        }
    }
    wf
}

/// The weight gradient `(o, c, 3, 3)` of the same convolution from its input `x` and output
/// gradient `dy`: `dU[ξ] = Σ_tiles (A·dY·Aᵀ)[ξ] · V[ξ]ᵀ`, then `dW = Gᵀ·dU·G`, the adjoint of
/// the forward transforms (so 2.25× or, by F(4×4, 3×3), 4× fewer multiplications than
/// `dY·colᵀ`). `None` where [`conv3x3`] would be `None`, the policy's
/// [`KernelPolicy::winograd_weight_grad`] is off or the image is smaller than
/// [`WINOGRAD_WEIGHT_GRAD_MIN_SIDE`].
pub(crate) fn weight_grad3x3(
    x: &[f32],
    dy: &[f32],
    d: &Dims,
    policy: &KernelPolicy,
) -> Option<Vec<f32>> {
    let p = policy.effective();
    if !p.winograd_weight_grad || d.h.min(d.w) < WINOGRAD_WEIGHT_GRAD_MIN_SIDE || d.is_empty() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        with_isa!(p, |s| {
            if p.winograd_f43 && d.fits_f43() {
                f4x4::weight_grad(s, x, dy, d)
            } else {
                f2x2::weight_grad(s, x, dy, d)
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (x, dy);
        None
    }
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    static BIG: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's reusable buffer of `len` floats, kept between calls so that the
/// large transform buffers are neither zeroed nor faulted in anew each time. Its contents are
/// whatever the last user left: callers write every element they read.
#[cfg(target_arch = "x86_64")]
pub(crate) fn with_big<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    BIG.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.);
            }
            f(&mut buf[..len])
        }
        // a re-entrant call (none today) gets a fresh buffer
        Err(_) => f(&mut vec![0.; len]),
    })
}

/// Writes the `(n, c, h, w)` input with a zero border into the planes of `hp × wp` (the image at
/// (1, 1), zeros to the right and below) at the start of `pad`, and zeros after them: every
/// element of `pad` is written.
#[cfg(target_arch = "x86_64")]
pub(crate) fn fill_padded_plane(x: &[f32], d: &Dims, (hp, wp): (usize, usize), pad: &mut [f32]) {
    use rayon::prelude::*;
    let plane = hp * wp;
    assert_eq!(x.len(), d.n * d.c * d.h * d.w, "winograd: input length");
    assert!(hp > d.h + 1 && wp > d.w + 1 && pad.len() >= d.n * d.c * plane);
    let (planes, slack) = pad.split_at_mut(d.n * d.c * plane);
    slack.fill(0.);
    planes.par_chunks_mut(plane).zip(x.par_chunks(d.h * d.w)).for_each(|(pl, xs)| {
        pl[..wp].fill(0.);
        for (y, row) in xs.chunks(d.w).enumerate() {
            let r = &mut pl[(y + 1) * wp..(y + 2) * wp];
            r[0] = 0.;
            r[1..=d.w].copy_from_slice(row);
            r[d.w + 1..].fill(0.);
        }
        pl[(d.h + 1) * wp..].fill(0.);
    });
}
