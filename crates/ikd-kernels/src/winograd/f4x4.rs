//! 3×3 stride-1 convolutions with padding 1 by Winograd's F(4×4, 3×3)
//! ([Lavin & Gray 2016](https://arxiv.org/abs/1509.09308)), for the larger images.
//!
//! Each 4×4 output tile comes from a 6×6 input tile: `Y = Aᵀ[(G·g·Gᵀ) ⊙ (Bᵀ·d·B)]A`, 36
//! multiplications per pair of channels for 16 outputs (2.25 per output against F(2×2, 3×3)'s
//! 4 and the direct sum's 9), as 36 independent products `M[ξ] (O×T) = U[ξ] (O×C) · V[ξ] (C×T)`
//! over the tiles. The price is rounding: the transforms' coefficients reach 8 and 1/24, so f32
//! results sit about 5–10× further from the exact sum than F(2×2, 3×3)'s (relative L2 error
//! ~1–3e-6 against ~2–4e-7, growing with the channels). Forward, input gradient and weight
//! gradient (`dU[ξ] = Σ_tiles (A·dY·Aᵀ)[ξ]·V[ξ]ᵀ`, `dW = Gᵀ·dU·G`: the adjoint transforms, 36
//! packed products) take it on images at least [`super::WINOGRAD_F43_MIN_SIDE`] pixels a side whose
//! width is a multiple of 16 and height a multiple of 4, with at least
//! [`super::WINOGRAD_F43_MIN_CHANNELS`] input and output channels (HRNet-W32's 64-, 32- and 16-pixel
//! branches at 256²); everything else keeps F(2×2, 3×3) (see [`crate::KernelPolicy::winograd_f43`]).
//!
//! Lanes: a vector holds 16 tiles as four quarters of 4 neighbouring tiles of one tile row (the
//! width is a multiple of 16 pixels, so quarters never straddle rows), each read by contiguous
//! loads and combined by permutes, its outputs interleaved back the same way. f32 only, on
//! x86-64 CPUs with AVX-512F.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::avx512::{
    aligned, filter_grads_by, filter_taps, first_lanes, kernel, zero_padding, Out, L, MR,
};
use super::{fill_padded_plane, with_big, Dims};
use crate::cpu::Affine;
use crate::gemm::{matmul, Mat, Parallelism};

/// Tile elements (6×6).
const XI: usize = 36;
/// Slack after the padded input: a quarter's loads run up to 5 floats past its row.
const SLACK: usize = 2 * L;

struct Plan {
    d: Dims,
    /// tiles per image row (a multiple of 4) and column
    tw: usize,
    th: usize,
    /// quarters (4 neighbouring tiles of a tile row), and vectors (four quarters each; the
    /// last may hold fewer)
    quarters: usize,
    vectors: usize,
    /// padded plane `(h + 2) × wp`
    wp: usize,
    plane: usize,
    /// vectors per block, and blocks
    nb: usize,
    blocks: usize,
}

impl Plan {
    fn new(d: &Dims) -> Self {
        let (th, tw) = (d.h / 4, d.w / 4);
        let quarters = d.n * th * tw / 4;
        let vectors = quarters.div_ceil(4);
        // a block's transformed tiles (36·C·16·nb floats) stay near 256 KiB
        let nb = (4096 / (XI * d.c.max(1))).clamp(2, 8).min(vectors);
        let wp = d.w + 2;
        let plane = (d.h + 2) * wp;
        Self { d: *d, tw, th, quarters, vectors, wp, plane, nb, blocks: vectors.div_ceil(nb) }
    }

    /// Quarter `k`'s first tile: `(image, tile row, tile column)`.
    fn quarter(&self, k: usize) -> (usize, usize, usize) {
        let per_row = self.tw / 4;
        let (n, r) = (k / (self.th * per_row), k % (self.th * per_row));
        (n, r / per_row, (r % per_row) * 4)
    }
}

pub(super) fn conv3x3(
    x: &[f32],
    w: &[f32],
    d: &Dims,
    epi: Option<&Affine<'_, f32>>,
) -> Option<Vec<f32>> {
    let p = Plan::new(d);
    assert_eq!(w.len(), d.o * d.c * 9, "winograd: weight length");
    assert_eq!(x.len(), d.n * d.c * d.h * d.w, "winograd: input length");
    let pad_len = d.n * d.c * p.plane + SLACK;
    let (o8, c8) = (d.o.div_ceil(MR) * MR, d.c.div_ceil(MR) * MR);
    let u_len = XI * o8 * c8;
    let nbt = p.nb * L;
    let vlen = XI * d.c * nbt;
    let obn = o8 / MR;
    // a product buffer for `groups` groups of MR channels
    let mlen = |groups: usize| XI * groups * MR * nbt;
    // few blocks (small images): the products of each block split over groups of output
    // channels too, so that every thread has work
    let want = 4 * rayon::current_num_threads().max(1);
    let slices = want.div_ceil(p.blocks).clamp(1, obn);
    let vall_len = if slices == 1 { 0 } else { p.blocks * vlen };
    Some(with_big(pad_len + u_len + vall_len, |big| {
        let (pad, rest) = big.split_at_mut(pad_len);
        let (u, vall) = rest.split_at_mut(u_len);
        fill_padded_plane(x, d, (d.h + 2, p.wp), pad);
        // SAFETY: AVX-512F was detected (`KernelPolicy::effective`)
        unsafe { filters(w, (d.o, d.c), (o8, c8), u) };
        let (pad, u) = (&*pad, &*u);
        let len = d.n * d.o * d.h * d.w;
        let mut out: Vec<f32> = Vec::with_capacity(len);
        let ptr = Out(out.as_mut_ptr());
        if slices == 1 {
            (0..p.blocks).into_par_iter().for_each(|b| {
                <f32 as crate::cpu::Float>::with_scratch(vlen + L, mlen(obn) + L, |vb, mb| {
                    let vb = aligned(vb, vlen);
                    let mb = aligned(mb, mlen(obn));
                    // SAFETY: AVX-512F was detected; the block writes only its own tiles
                    unsafe {
                        transform_block(&p, pad, b, 0, vb);
                        products(&p, vb, (u, c8), b, (0, obn), mb, (ptr, epi));
                    }
                })
            });
        } else {
            // every block's tiles transformed once (split over channels), then the
            // products split over (block, slice of channel groups)
            let per = d.c.div_ceil(want).max(1);
            vall.par_chunks_mut(vlen).enumerate().for_each(|(b, vb)| {
                vb.par_chunks_mut(XI * nbt * per).enumerate().for_each(|(k, chunk)| {
                    // SAFETY: AVX-512F was detected
                    unsafe { transform_block(&p, pad, b, k * per, chunk) }
                })
            });
            let vall = &*vall;
            (0..p.blocks * slices).into_par_iter().for_each(|item| {
                let (b, sl) = (item / slices, item % slices);
                let (lo, hi) = (sl * obn / slices, (sl + 1) * obn / slices);
                let vb = &vall[b * vlen..(b + 1) * vlen];
                <f32 as crate::cpu::Float>::with_scratch(0, mlen(hi - lo) + L, |_, mb| {
                    let mb = aligned(mb, mlen(hi - lo));
                    // SAFETY: AVX-512F was detected; the item writes only its tiles of its
                    // channels
                    unsafe { products(&p, vb, (u, c8), b, (lo, hi), mb, (ptr, epi)) };
                })
            });
        }
        // SAFETY: the blocks' quarters partition every image's tiles, the slices the
        // channels, and each item writes all of its tiles' outputs of its channels, so all
        // `len` elements are written
        unsafe { out.set_len(len) };
        out
    }))
}

/// `U = G·g·Gᵀ` of every filter of `w (o, c, 3, 3)` into `u`, laid out `[ξ][o_pad][c_pad]`
/// (padding zero), 16 filters of a row at a time.
#[target_feature(enable = "avx512f")]
fn filters(w: &[f32], (o, c): (usize, usize), (o_pad, c_pad): (usize, usize), u: &mut [f32]) {
    let plane = o_pad * c_pad;
    assert!(w.len() == 9 * o * c && u.len() == XI * plane && o <= o_pad && c <= c_pad);
    zero_padding(u, plane, (o, c), c_pad);
    // each task writes row o of every plane
    let ptr = Out(u.as_mut_ptr());
    (0..o)
        .into_par_iter()
        .for_each(|row| filters_row(&w[row * c * 9..(row + 1) * c * 9], plane, row * c_pad, ptr));
}

/// `G·v` for the three values of a filter column or row: six values.
#[target_feature(enable = "avx512f")]
fn g6(a: __m512, b: __m512, c: __m512) -> [__m512; 6] {
    let sixth = _mm512_set1_ps(1. / 6.);
    let (quarter, twelfth, twentyfourth) =
        (_mm512_set1_ps(0.25), _mm512_set1_ps(1. / 12.), _mm512_set1_ps(1. / 24.));
    let ac = _mm512_add_ps(a, c);
    // (a/24 + c/6) ± b/12
    let e = _mm512_fmadd_ps(a, twentyfourth, _mm512_mul_ps(c, sixth));
    let f = _mm512_mul_ps(b, twelfth);
    [
        _mm512_mul_ps(a, quarter),
        _mm512_mul_ps(_mm512_add_ps(ac, b), _mm512_set1_ps(-1. / 6.)),
        _mm512_mul_ps(_mm512_sub_ps(ac, b), _mm512_set1_ps(-1. / 6.)),
        _mm512_add_ps(e, f),
        _mm512_sub_ps(e, f),
        c,
    ]
}

/// Row `w_row` (`c` filters) of [`filters`], written at `at` of every plane.
#[target_feature(enable = "avx512f")]
fn filters_row(w_row: &[f32], plane: usize, at: usize, ptr: Out) {
    let c = w_row.len() / 9;
    for c0 in (0..c).step_by(L) {
        let count = (c - c0).min(L);
        let mask = first_lanes(count);
        let g = filter_taps(w_row, c0, count);
        // G·g down the columns: t[i][j], then ·Gᵀ along each row
        let [c0s, c1s, c2s] = [0, 1, 2].map(|j| g6(g[j], g[3 + j], g[6 + j]));
        for (i, ((&a, &b), &cc)) in c0s.iter().zip(&c1s).zip(&c2s).enumerate() {
            let row = g6(a, b, cc);
            for (j, &val) in row.iter().enumerate() {
                // SAFETY: the masked lanes lie in row o of plane 6i + j; this task alone
                // writes that row
                unsafe { _mm512_mask_storeu_ps(ptr.add((i * 6 + j) * plane + at + c0), mask, val) };
            }
        }
    }
}

/// `Bᵀ·v` of six values of an input tile column or row.
#[target_feature(enable = "avx512f")]
fn bt6(d: &[__m512; 6]) -> [__m512; 6] {
    let (four, five, two) = (_mm512_set1_ps(4.), _mm512_set1_ps(5.), _mm512_set1_ps(2.));
    let t1 = _mm512_fnmadd_ps(four, d[2], d[4]); // d4 − 4·d2
    let t2 = _mm512_fnmadd_ps(four, d[1], d[3]); // d3 − 4·d1
    let t3 = _mm512_sub_ps(d[4], d[2]);
    let t4 = _mm512_mul_ps(two, _mm512_sub_ps(d[3], d[1]));
    [
        _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4])),
        _mm512_add_ps(t1, t2),
        _mm512_sub_ps(t1, t2),
        _mm512_add_ps(t3, t4),
        _mm512_sub_ps(t3, t4),
        _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5])),
    ]
}

/// `Aᵀ·v` of six values of a product tile column or row: four outputs.
#[target_feature(enable = "avx512f")]
fn at4(m: &[__m512; 6]) -> [__m512; 4] {
    let (s12, d12) = (_mm512_add_ps(m[1], m[2]), _mm512_sub_ps(m[1], m[2]));
    let (s34, d34) = (_mm512_add_ps(m[3], m[4]), _mm512_sub_ps(m[3], m[4]));
    [
        _mm512_add_ps(_mm512_add_ps(m[0], s12), s34),
        _mm512_fmadd_ps(_mm512_set1_ps(2.), d34, d12),
        _mm512_fmadd_ps(_mm512_set1_ps(4.), s34, s12),
        _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.), d34, d12), m[5]),
    ]
}

/// Permute indices from a function of the lane.
#[target_feature(enable = "avx512f")]
fn lanes(f: impl Fn(i32) -> i32) -> __m512i {
    let idx: [i32; L] = std::array::from_fn(|l| f(l as i32));
    // SAFETY: 16 i32
    unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) }
}

/// Permute indices: every fourth element of a pair of vectors into lanes 0..8, and into
/// lanes 8..16.
#[target_feature(enable = "avx512f")]
fn quarter_indices() -> (__m512i, __m512i) {
    (
        _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0),
        _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 8, 12, 16, 20, 24, 28),
    )
}

/// Where vector `v`'s four quarters (lanes `4k..4k + 4`) start in the padded input
/// (channel 0) and in the output (channel 0, row 0 of the tiles); `None` past the last.
fn vector_origins(p: &Plan, v: usize) -> [Option<(usize, usize, usize)>; 4] {
    [0, 1, 2, 3].map(|k| {
        let q = 4 * v + k;
        (q < p.quarters).then(|| {
            let (n, ty, tx0) = p.quarter(q);
            let pad = n * p.d.c * p.plane + 4 * ty * p.wp + 4 * tx0;
            (pad, n, 4 * ty * p.d.w + 4 * tx0)
        })
    })
}

/// The transformed input tiles of block `b`, channels `c_lo..` (as many as `vb` holds):
/// `vb[((c − c_lo)·36 + ξ)·nbt + tile]`, `nbt = 16·nb`.
#[target_feature(enable = "avx512f")]
fn transform_block(p: &Plan, pad: &[f32], b: usize, c_lo: usize, vb: &mut [f32]) {
    let nbv = p.nb.min(p.vectors - b * p.nb);
    let nbt = p.nb * L;
    let c_n = vb.len() / (XI * nbt);
    assert!(c_lo + c_n <= p.d.c);
    let (lo_idx, hi_idx) = quarter_indices();
    for v in 0..nbv {
        let origins = vector_origins(p, b * p.nb + v);
        let Some((a0, _, _)) = origins[0] else { continue };
        // a missing quarter reads quarter 0 again; its lanes are zeroed
        let at = origins.map(|o| o.map_or(a0, |o| o.0));
        let live = origins.iter().enumerate().fold(0u16, |m, (k, o)| {
            if o.is_some() {
                m | (0xf << (4 * k))
            } else {
                m
            }
        });
        for c in 0..c_n {
            let off = (c_lo + c) * p.plane;
            // a quarter's window rows: 16 floats from its origin + q, the last read ending
            // at origin + 5·wp + 5 + 16 ≤ the padded input + SLACK
            assert!(at.iter().max().unwrap_or(&a0) + off + 5 * p.wp + 5 + L <= pad.len());
            // one element of the 16 windows (a macro, not a closure: inlined for sure):
            // elements 0, 4, 8, 12 of each quarter's load
            macro_rules! load {
                ($r:expr, $q:expr) => {{
                    let (r, q): (usize, usize) = ($r, $q);
                    // SAFETY: in bounds (asserted above)
                    unsafe {
                        let ld = |k: usize| {
                            _mm512_loadu_ps(pad.as_ptr().add(at[k] + off + r * p.wp + q))
                        };
                        let lo = _mm512_permutex2var_ps(ld(0), lo_idx, ld(1));
                        let hi = _mm512_permutex2var_ps(ld(2), hi_idx, ld(3));
                        _mm512_maskz_mov_ps(live, _mm512_mask_blend_ps(0xff00, lo, hi))
                    }
                }};
            }
            // Bᵀ·d down the columns (cols[q][r]), then ·B along the rows (built in
            // registers, no zeroed arrays)
            macro_rules! col {
                ($q:expr) => {
                    bt6(&[
                        load!(0, $q),
                        load!(1, $q),
                        load!(2, $q),
                        load!(3, $q),
                        load!(4, $q),
                        load!(5, $q),
                    ])
                };
            }
            let cols = [col!(0), col!(1), col!(2), col!(3), col!(4), col!(5)];
            #[allow(clippy::needless_range_loop)] // r indexes the six columns alike
            for r in 0..6 {
                let row =
                    bt6(&[cols[0][r], cols[1][r], cols[2][r], cols[3][r], cols[4][r], cols[5][r]]);
                for (q, &val) in row.iter().enumerate() {
                    let at = (c * XI + r * 6 + q) * nbt + v * L;
                    // SAFETY: at + 16 ≤ 36·c_n·nbt ≤ vb.len()
                    unsafe { _mm512_storeu_ps(vb.as_mut_ptr().add(at), val) };
                }
            }
        }
    }
}

/// Block `b`'s products, output transform, epilogue and stores, from its transformed
/// tiles `vb` (see [`transform_block`]) and the transformed filters `u` (rows of `c8`).
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn products(
    p: &Plan,
    vb: &[f32],
    (u, c8): (&[f32], usize),
    b: usize,
    (ob_lo, ob_hi): (usize, usize),
    mb: &mut [f32],
    (out, epi): (Out, Option<&Affine<'_, f32>>),
) {
    let d = p.d;
    let nbv = p.nb.min(p.vectors - b * p.nb);
    let nbt = p.nb * L;
    let o8 = d.o.div_ceil(MR) * MR;
    let plane = o8 * c8;
    // this item's output channels o_lo..o_hi, MR per group: mb[ξ][o − o_lo][tile]
    let rows = (ob_hi - ob_lo) * MR;
    assert!(mb.len() >= XI * rows * nbt && ob_hi * MR <= o8);
    for xi in 0..XI {
        let vx = &vb[xi * nbt..];
        for ob in ob_lo..ob_hi {
            let ug = (&u[xi * plane + ob * MR * c8..(xi + 1) * plane], c8, 1);
            let m0 = (xi * rows + (ob - ob_lo) * MR) * nbt;
            let mx = &mut mb[m0..m0 + MR * nbt];
            let mut v = 0;
            while v + 2 <= nbv {
                kernel::<2>(ug, d.c, (&vx[v * L..], XI * nbt), (&mut mx[v * L..], nbt));
                v += 2;
            }
            if v < nbv {
                kernel::<1>(ug, d.c, (&vx[v * L..], XI * nbt), (&mut mx[v * L..], nbt));
            }
        }
    }
    for o in ob_lo * MR..(ob_hi * MR).min(d.o) {
        for v in 0..nbv {
            let mut y = output_transform(mb, (o - ob_lo * MR) * nbt + v * L, rows * nbt);
            if let Some(e) = epi {
                // eval batch norm (+ ReLU) while the outputs are in registers
                let (a, sh) = (_mm512_set1_ps(e.scale[o]), _mm512_set1_ps(e.shift[o]));
                for yv in y.iter_mut().flatten() {
                    *yv = _mm512_fmadd_ps(*yv, a, sh);
                    if e.relu {
                        *yv = _mm512_max_ps(*yv, _mm512_setzero_ps());
                    }
                }
            }
            // SAFETY: the vector's quarters lie in this block, which alone writes them
            unsafe { store(p, &y, vector_origins(p, b * p.nb + v), o, out) };
        }
    }
}

/// `Aᵀ·m·A` of 16 tiles from `mb[ξ·stride + at ..]`: `y[i][j]`, output row `i`, column `j`.
#[target_feature(enable = "avx512f")]
fn output_transform(mb: &[f32], at: usize, stride: usize) -> [[__m512; 4]; 4] {
    assert!(at + (XI - 1) * stride + L <= mb.len());
    let ptr = mb.as_ptr();
    macro_rules! col {
        ($q:expr) => {{
            // SAFETY: in bounds (asserted above)
            let ld = |r: usize| unsafe { _mm512_loadu_ps(ptr.add((r * 6 + $q) * stride + at)) };
            at4(&[ld(0), ld(1), ld(2), ld(3), ld(4), ld(5)])
        }};
    }
    // Aᵀ·m down the columns (cols[q][i]), then ·A along the rows
    let cols = [col!(0), col!(1), col!(2), col!(3), col!(4), col!(5)];
    macro_rules! row {
        ($i:expr) => {
            at4(&[cols[0][$i], cols[1][$i], cols[2][$i], cols[3][$i], cols[4][$i], cols[5][$i]])
        };
    }
    [row!(0), row!(1), row!(2), row!(3)]
}

/// Writes 16 tiles' 4×4 outputs of channel `o`: per output row, each quarter's 4 tiles
/// interleaved into 16 contiguous pixels.
///
/// # Safety
/// `out` holds the `(n, o, h, w)` output; no other thread writes these tiles.
#[target_feature(enable = "avx512f")]
unsafe fn store(
    p: &Plan,
    y: &[[__m512; 4]; 4],
    quarters: [Option<(usize, usize, usize)>; 4],
    o: usize,
    out: Out,
) {
    let d = p.d;
    // columns 0 and 1 (or 2 and 3) of quarter k's tiles in pairs, then the pairs of pairs
    // (lanes 0..8: tile 4k + l/2 of y[0] or y[1])
    let pair =
        [0, 1, 2, 3].map(|k| lanes(|l| if l < 8 { 4 * k + l / 2 + 16 * (l % 2) } else { 0 }));
    let quad = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
    for (k, quarter) in quarters.iter().enumerate() {
        let Some((_, n, at)) = *quarter else { continue };
        let base = (n * d.o + o) * d.h * d.w + at;
        for (i, yi) in y.iter().enumerate() {
            let p01 = _mm512_permutex2var_ps(yi[0], pair[k], yi[1]);
            let p23 = _mm512_permutex2var_ps(yi[2], pair[k], yi[3]);
            // SAFETY: row 4·ty + i of channel o of image n, pixels 4·tx0 .. 4·tx0 + 16,
            // inside the image (the width is a multiple of 16)
            unsafe {
                _mm512_storeu_ps(out.add(base + i * d.w), _mm512_permutex2var_ps(p01, quad, p23))
            };
        }
    }
}

pub(super) fn weight_grad(x: &[f32], dy: &[f32], d: &Dims) -> Option<Vec<f32>> {
    assert_eq!(dy.len(), d.n * d.o * d.h * d.w, "winograd: output gradient length");
    let p = Plan::new(d);
    // every tile at once: one block of all vectors, rows one vector longer than the tiles
    // (`ld`) so that rows read together do not share cache sets
    let all = Plan { nb: p.vectors + 1, blocks: 1, ..p };
    let tp = p.vectors * L;
    let ld = tp + L;
    let pad_len = d.n * d.c * p.plane + SLACK;
    let (v_len, m_len, du_len) = (d.c * XI * ld, d.o * XI * ld, XI * d.o * d.c);
    let per = d.c.div_ceil(4 * rayon::current_num_threads().max(1)).max(1);
    Some(with_big(pad_len + v_len + m_len + du_len, |big| {
        let (pad, rest) = big.split_at_mut(pad_len);
        let (v, rest) = rest.split_at_mut(v_len);
        let (m, du) = rest.split_at_mut(m_len);
        fill_padded_plane(x, d, (d.h + 2, p.wp), pad);
        let pad = &*pad;
        v.par_chunks_mut(XI * ld * per).enumerate().for_each(|(k, chunk)| {
            // SAFETY: AVX-512F was detected (`KernelPolicy::effective`)
            unsafe { transform_block(&all, pad, 0, k * per, chunk) }
        });
        m.par_chunks_mut(XI * ld).enumerate().for_each(|(o, mo)| {
            // SAFETY: AVX-512F was detected (`KernelPolicy::effective`)
            unsafe { grad_transform(&p, dy, o, mo, ld) }
        });
        // dU[ξ] (O×C) = dM[ξ] (O×T) · V[ξ]ᵀ (T×C), one packed product per ξ (the lanes
        // past the last tile are zero in both)
        du.par_chunks_mut(d.o * d.c).enumerate().for_each(|(xi, out)| {
            let lhs = Mat { data: &m[xi * ld..], rs: XI * ld, cs: 1 };
            let rhs = Mat { data: &v[xi * ld..], rs: 1, cs: XI * ld };
            matmul(d.o, d.c, tp, out, d.c, false, lhs, rhs, Parallelism::None);
        });
        // SAFETY: AVX-512F was detected (`KernelPolicy::effective`)
        unsafe { filter_grads(du, d.o * d.c) }
    }))
}

/// `A·v` of four output-gradient values of a tile column or row: six values (the adjoint
/// of [`at4`]).
#[target_feature(enable = "avx512f")]
fn a6(y: &[__m512; 4]) -> [__m512; 6] {
    let (e, o) = (_mm512_add_ps(y[0], y[2]), _mm512_add_ps(y[1], y[3]));
    let e4 = _mm512_fmadd_ps(_mm512_set1_ps(4.), y[2], y[0]);
    let o8 = _mm512_fmadd_ps(_mm512_set1_ps(8.), y[3], _mm512_mul_ps(_mm512_set1_ps(2.), y[1]));
    [
        y[0],
        _mm512_add_ps(e, o),
        _mm512_sub_ps(e, o),
        _mm512_add_ps(e4, o8),
        _mm512_sub_ps(e4, o8),
        y[3],
    ]
}

/// `dM = A·dY·Aᵀ` of every tile for output channel `o`: `mo[ξ·ld + tile]`; the lanes of
/// missing quarters get 0.
#[target_feature(enable = "avx512f")]
fn grad_transform(p: &Plan, dy: &[f32], o: usize, mo: &mut [f32], ld: usize) {
    let d = p.d;
    assert!(mo.len() == XI * ld && p.vectors * L <= ld);
    // 16 pixels of a row (4 tiles × 4 columns): column j of the 4 tiles into every group of
    // four lanes (each quarter blends in its own)
    let take = [0, 1, 2, 3].map(|j| lanes(|l| 4 * (l % 4) + j));
    for v in 0..p.vectors {
        let quarters = vector_origins(p, v);
        // y[i][j]: row i, column j of the 16 tiles' output gradients
        let mut y = [[_mm512_setzero_ps(); 4]; 4];
        for (k, quarter) in quarters.iter().enumerate() {
            let Some((_, n, at)) = *quarter else { continue };
            let base = (n * d.o + o) * d.h * d.w + at;
            assert!(base + 3 * d.w + L <= dy.len());
            let lanes: u16 = 0xf << (4 * k);
            for (i, yi) in y.iter_mut().enumerate() {
                // SAFETY: row 4·ty + i of channel o of image n, 16 pixels from 4·tx0
                // (asserted above)
                let a = unsafe { _mm512_loadu_ps(dy.as_ptr().add(base + i * d.w)) };
                for (j, yij) in yi.iter_mut().enumerate() {
                    *yij = _mm512_mask_permutexvar_ps(*yij, lanes, take[j], a);
                }
            }
        }
        // A·dY down the columns (cols[j][a]), then ·Aᵀ along the rows
        let cols = [0, 1, 2, 3].map(|j| a6(&[y[0][j], y[1][j], y[2][j], y[3][j]]));
        #[allow(clippy::needless_range_loop)] // a indexes the four columns alike
        for a in 0..6 {
            let row = a6(&[cols[0][a], cols[1][a], cols[2][a], cols[3][a]]);
            for (b, &val) in row.iter().enumerate() {
                let at = (a * 6 + b) * ld + v * L;
                // SAFETY: at + 16 ≤ 36·ld (asserted above)
                unsafe { _mm512_storeu_ps(mo.as_mut_ptr().add(at), val) };
            }
        }
    }
}

/// `Gᵀ·v` of six values of a filter-gradient column or row: three values (the adjoint of
/// [`g6`]).
#[target_feature(enable = "avx512f")]
fn gt3(u: &[__m512; 6]) -> [__m512; 3] {
    let (s12, d12) = (_mm512_add_ps(u[1], u[2]), _mm512_sub_ps(u[1], u[2]));
    let (s34, d34) = (_mm512_add_ps(u[3], u[4]), _mm512_sub_ps(u[3], u[4]));
    let sixth = _mm512_set1_ps(1. / 6.);
    let neg_sixth = _mm512_set1_ps(-1. / 6.);
    [
        _mm512_fmadd_ps(
            u[0],
            _mm512_set1_ps(0.25),
            _mm512_fmadd_ps(s12, neg_sixth, _mm512_mul_ps(s34, _mm512_set1_ps(1. / 24.))),
        ),
        _mm512_fmadd_ps(d12, neg_sixth, _mm512_mul_ps(d34, _mm512_set1_ps(1. / 12.))),
        _mm512_add_ps(_mm512_fmadd_ps(s12, neg_sixth, _mm512_mul_ps(s34, sixth)), u[5]),
    ]
}

/// `dW = Gᵀ·dU·G` of every filter from `du[ξ][filter]` (`36 × n`), 16 filters at a time:
/// the weight gradient `(n, 3, 3)`.
#[target_feature(enable = "avx512f")]
fn filter_grads(du: &[f32], n: usize) -> Vec<f32> {
    filter_grads_by::<XI>(du, n, |m| {
        // Gᵀ·dU down the columns (cols[b][k]), then ·G along the rows: k = 3·row + column
        let cols = [0, 1, 2, 3, 4, 5]
            .map(|b| gt3(&[m[b], m[6 + b], m[12 + b], m[18 + b], m[24 + b], m[30 + b]]));
        let mut g = [_mm512_setzero_ps(); 9];
        for k in 0..3 {
            let row =
                gt3(&[cols[0][k], cols[1][k], cols[2][k], cols[3][k], cols[4][k], cols[5][k]]);
            g[3 * k..3 * k + 3].copy_from_slice(&row);
        }
        g
    })
}
