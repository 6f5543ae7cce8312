//! 3×3 stride-1 convolutions with padding 1 by Winograd's minimal filtering F(2×2, 3×3)
//! ([Lavin & Gray 2016](https://arxiv.org/abs/1509.09308)).
//!
//! Each 2×2 output tile comes from a 4×4 input tile: `Y = Aᵀ[(G·g·Gᵀ) ⊙ (Bᵀ·d·B)]A`, 16
//! multiplications per pair of channels instead of 36, so the matrix products shrink 2.25×.
//! With `U = G·g·Gᵀ` (the filters, 16 values each) and `V = Bᵀ·d·B` (the input tiles), the
//! convolution is 16 independent products `M[ξ] (O×T) = U[ξ] (O×C) · V[ξ] (C×T)` over the
//! tiles `T`, followed by the output transform. F(2×2, 3×3)'s transforms use only the
//! coefficients 0, ±1 and ±½, so f32 results stay within a few ulp of the direct sum (HRNet's
//! timm parity and the PyTorch training trajectory hold with it on).
//!
//! The work is split into blocks of tiles (and, for small images, of output channels) on
//! rayon's pool; each block transforms its tiles into a buffer that stays in cache, runs the 16
//! products with an 8×32 AVX-512 micro-kernel and writes its outputs. f32 only, on x86-64 CPUs
//! with AVX-512F (checked at run time); everything else takes the im2col path.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::avx512::{
    aligned, filter_grads_by, filter_taps, first_lanes, kernel, zero_padding, Out, L, MR,
};
use super::{fill_padded_plane, with_big, Dims};
use crate::cpu::Affine;
use crate::gemm::{matmul, Mat, Parallelism};

/// Permute indices that pick the even and the odd elements of two vectors (32 floats).
#[target_feature(enable = "avx512f")]
fn even_odd() -> (__m512i, __m512i) {
    (
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
        _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31),
    )
}

/// Row `2·tx0 ..` of a 16-tile vector: the output pixels in the image (up to 32) as the
/// masks of its first and second 16.
fn row_masks(w: usize, x0: usize) -> (__mmask16, __mmask16) {
    let valid = (w - x0).min(2 * L);
    (first_lanes(valid), first_lanes(valid.saturating_sub(L)))
}

/// The transformed filters `U[ξ][o][c]` of a weight `(o, c, 3, 3)` (`plane` floats per ξ,
/// rows of `ld`), read as they are (a convolution with the weight) or with `flip` as
/// `U[π(ξ)][c][o]` (π swaps the first and last row and column of the 4×4 tile): the
/// filters of the convolution with the flipped, transposed weight, its input gradient.
struct Filt<'a> {
    u: &'a [f32],
    plane: usize,
    ld: usize,
    flip: bool,
}

impl Filt<'_> {
    /// Rows `r0..r0 + 8` of output channels for tile element `ξ`: `(slice, row stride, k
    /// stride)` for [`kernel`].
    fn rows(&self, xi: usize, r0: usize) -> (&[f32], usize, usize) {
        if self.flip {
            let swap = |i: usize| [3, 1, 2, 0][i];
            let pxi = swap(xi / 4) * 4 + swap(xi % 4);
            (&self.u[pxi * self.plane + r0..(pxi + 1) * self.plane], 1, self.ld)
        } else {
            (&self.u[xi * self.plane + r0 * self.ld..(xi + 1) * self.plane], self.ld, 1)
        }
    }
}

/// How a vector's 16 lanes map to tiles.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lanes {
    /// 16 neighbouring tiles of one tile row (images at least 32 pixels wide): contiguous
    /// loads and stores, `per_row` vectors per tile row.
    Rows { per_row: usize },
    /// the tiles in order across rows and images: gathered loads, scalar stores.
    Flat,
}

#[derive(Clone, Copy)]
struct Plan {
    d: Dims,
    /// tiles per image column and row
    th: usize,
    tw: usize,
    /// padded plane: `hp × wp`, the image at (1, 1)
    hp: usize,
    wp: usize,
    tiles: usize,
    lanes: Lanes,
    vectors: usize,
    /// vectors per block, and blocks
    nb: usize,
    blocks: usize,
    /// groups of MR output channels, and how many slices they are split into
    obn: usize,
    slices: usize,
}

impl Plan {
    fn new(d: &Dims) -> Self {
        let (th, tw) = (d.h.div_ceil(2), d.w.div_ceil(2));
        let tiles = d.n * th * tw;
        let (lanes, vectors) = if tw >= L {
            let per_row = tw.div_ceil(L);
            (Lanes::Rows { per_row }, d.n * th * per_row)
        } else {
            (Lanes::Flat, tiles.div_ceil(L))
        };
        // a block's transformed tiles (16·C·16·nb floats) stay near 256 KiB
        let nb = (256 / d.c.max(1)).clamp(2, 8).min(vectors);
        let blocks = vectors.div_ceil(nb);
        let obn = d.o.div_ceil(MR);
        let want = 4 * rayon::current_num_threads().max(1);
        let slices = want.div_ceil(blocks).clamp(1, obn);
        let (hp, wp) = (2 * th + 2, 2 * tw + 2);
        Self { d: *d, th, tw, hp, wp, tiles, lanes, vectors, nb, blocks, obn, slices }
    }

    /// The tile of lane 0 of row-mode vector `v`: `(image, tile row, tile column)`.
    fn row_vector(&self, v: usize, per_row: usize) -> (usize, usize, usize) {
        let r = v / per_row;
        (r / self.th, r % self.th, (v % per_row) * L)
    }
}

/// Slack after the padded input: row-mode loads of a row's last vector run up to 48 floats
/// past its start.
const SLACK: usize = 3 * L;

/// Length of the input with a zero border (see [`fill_padded`]), `None` when too large for
/// 32-bit gather offsets.
fn padded_len(p: &Plan) -> Option<usize> {
    let len = p.d.n * p.d.c * p.hp * p.wp + SLACK;
    (len < i32::MAX as usize).then_some(len)
}

/// Writes the input with a zero border into `pad` (every element), so that every tile's
/// 4×4 window lies inside.
fn fill_padded(x: &[f32], p: &Plan, pad: &mut [f32]) {
    fill_padded_plane(x, &p.d, (p.hp, p.wp), pad)
}

pub(super) fn weight_grad(x: &[f32], dy: &[f32], d: &Dims) -> Option<Vec<f32>> {
    let p = Plan::new(d);
    let pad_len = padded_len(&p)?;
    assert_eq!(dy.len(), d.n * d.o * d.h * d.w, "winograd: output gradient length");
    // every tile at once: one block of all vectors, rows one vector longer than the tiles
    // (`ld`) so that rows read together do not share cache sets
    let all = Plan { nb: p.vectors + 1, blocks: 1, ..p };
    let tp = p.vectors * L;
    let ld = tp + L;
    let per = d.c.div_ceil(4 * rayon::current_num_threads().max(1)).max(1);
    let (v_len, m_len, du_len) = (d.c * 16 * ld, d.o * 16 * ld, 16 * d.o * d.c);
    Some(with_big(pad_len + v_len + m_len + du_len, |big| {
        let (pad, rest) = big.split_at_mut(pad_len);
        let (v, rest) = rest.split_at_mut(v_len);
        let (m, du) = rest.split_at_mut(m_len);
        fill_padded(x, &p, pad);
        let pad = &*pad;
        v.par_chunks_mut(16 * ld * per).enumerate().for_each(|(k, chunk)| {
            // SAFETY: AVX-512F was detected (`KernelPolicy::effective`)
            unsafe { transform_block(&all, pad, 0, k * per, chunk) }
        });
        let org = match p.lanes {
            Lanes::Flat => flat_lanes(&all, 0, p.vectors).1,
            Lanes::Rows { .. } => Vec::new(),
        };
        m.par_chunks_mut(16 * ld).enumerate().for_each(|(o, mo)| {
            // SAFETY: AVX-512F was detected (`KernelPolicy::effective`)
            unsafe { grad_transform(&p, dy, &org, o, mo, ld) }
        });
        // dU[ξ] (O×C) = dM[ξ] (O×T) · V[ξ]ᵀ (T×C): one packed matrix product per ξ (the
        // lanes past the last tile are zero in dM)
        du.par_chunks_mut(d.o * d.c).enumerate().for_each(|(xi, out)| {
            let lhs = Mat { data: &m[xi * ld..], rs: 16 * ld, cs: 1 };
            let rhs = Mat { data: &v[xi * ld..], rs: 1, cs: 16 * ld };
            matmul(d.o, d.c, tp, out, d.c, false, lhs, rhs, Parallelism::None);
        });
        // dW = Gᵀ·dU·G per filter
        // SAFETY: AVX-512F was detected (`KernelPolicy::effective`)
        unsafe { filter_grads(du, d.o, d.c) }
    }))
}

/// Writes `U = G·g·Gᵀ` of every filter of `w (o, c, 3, 3)` into `u`, laid out
/// `[ξ][o_pad][c_pad]` (padding zero): per row `o`, 16 filters at a time from nine
/// contiguous loads split by permutes.
#[target_feature(enable = "avx512f")]
fn filters(w: &[f32], (o, c): (usize, usize), (o_pad, c_pad): (usize, usize), u: &mut [f32]) {
    let plane = o_pad * c_pad;
    assert!(w.len() == 9 * o * c && u.len() == 16 * plane && o <= o_pad && c <= c_pad);
    zero_padding(u, plane, (o, c), c_pad);
    // each task writes row o of every plane
    let ptr = Out(u.as_mut_ptr());
    (0..o)
        .into_par_iter()
        .for_each(|row| filters_row(&w[row * c * 9..(row + 1) * c * 9], plane, row * c_pad, ptr));
}

/// Row `w_row` (`c` filters) of [`filters`], written at `at` of every plane.
#[target_feature(enable = "avx512f")]
fn filters_row(w_row: &[f32], plane: usize, at: usize, ptr: Out) {
    let c = w_row.len() / 9;
    let half = _mm512_set1_ps(0.5);
    for c0 in (0..c).step_by(L) {
        let count = (c - c0).min(L);
        let mask = first_lanes(count);
        let g = filter_taps(w_row, c0, count);
        // G·g (rows a of g → 4 rows), then ·Gᵀ along each row
        let mut t = [[_mm512_setzero_ps(); 3]; 4];
        for j in 0..3 {
            let (a, b, cc) = (g[j], g[3 + j], g[6 + j]);
            let ac = _mm512_add_ps(a, cc);
            t[0][j] = a;
            t[1][j] = _mm512_mul_ps(half, _mm512_add_ps(ac, b));
            t[2][j] = _mm512_mul_ps(half, _mm512_sub_ps(ac, b));
            t[3][j] = cc;
        }
        for (i, ti) in t.iter().enumerate() {
            let ac = _mm512_add_ps(ti[0], ti[2]);
            let row = [
                ti[0],
                _mm512_mul_ps(half, _mm512_add_ps(ac, ti[1])),
                _mm512_mul_ps(half, _mm512_sub_ps(ac, ti[1])),
                ti[2],
            ];
            for (j, &val) in row.iter().enumerate() {
                // SAFETY: the masked lanes lie in row o of plane 4i + j; this task alone
                // writes that row
                unsafe { _mm512_mask_storeu_ps(ptr.add((i * 4 + j) * plane + at + c0), mask, val) };
            }
        }
    }
}

/// `dW = Gᵀ·dU·G` of every filter from `du[ξ][o][c]` (`16 × O × C`), 16 filters at a time:
/// the weight gradient `(O, C, 3, 3)`.
#[target_feature(enable = "avx512f")]
fn filter_grads(du: &[f32], o: usize, c: usize) -> Vec<f32> {
    let half = _mm512_set1_ps(0.5);
    filter_grads_by::<16>(du, o * c, |m| {
        // ·G along each row: s[i][b]
        let mut s = [[_mm512_setzero_ps(); 3]; 4];
        for (i, si) in s.iter_mut().enumerate() {
            let (d0, d1, d2, d3) = (m[4 * i], m[4 * i + 1], m[4 * i + 2], m[4 * i + 3]);
            let sum = _mm512_mul_ps(half, _mm512_add_ps(d1, d2));
            si[0] = _mm512_add_ps(d0, sum);
            si[1] = _mm512_mul_ps(half, _mm512_sub_ps(d1, d2));
            si[2] = _mm512_add_ps(sum, d3);
        }
        // Gᵀ· down the columns: k = 3a + b
        let mut g = [_mm512_setzero_ps(); 9];
        for b in 0..3 {
            let sum = _mm512_mul_ps(half, _mm512_add_ps(s[1][b], s[2][b]));
            g[b] = _mm512_add_ps(s[0][b], sum);
            g[3 + b] = _mm512_mul_ps(half, _mm512_sub_ps(s[1][b], s[2][b]));
            g[6 + b] = _mm512_add_ps(sum, s[3][b]);
        }
        g
    })
}

/// [`filters`] of one filter, 8 rows (for the unit test).
#[cfg(test)]
#[target_feature(enable = "avx512f")]
fn filters_for_test(g: &[f32], u: &mut [f32]) {
    filters(g, (1, 1), (1, 8), u)
}

/// [`filter_grads`] of one filter (for the unit test).
#[cfg(test)]
#[target_feature(enable = "avx512f")]
fn filter_grads_for_test(du: &[f32]) -> Vec<f32> {
    filter_grads(du, 1, 1)
}

/// `dM = A·dY·Aᵀ` (the adjoint of the output transform) of every tile for output channel
/// `o`: `mo[ξ·ld + tile]`; lanes past the image or the last tile get 0.
#[target_feature(enable = "avx512f")]
fn grad_transform(
    p: &Plan,
    dy: &[f32],
    org: &[Option<(usize, usize, usize)>],
    o: usize,
    mo: &mut [f32],
    ld: usize,
) {
    let d = p.d;
    assert!(mo.len() == 16 * ld && p.vectors * L <= ld);
    let (even, odd) = even_odd();
    for v in 0..p.vectors {
        // the 2×2 output gradients of 16 tiles: [y00, y01, y10, y11]
        let mut y = [_mm512_setzero_ps(); 4];
        match p.lanes {
            Lanes::Rows { per_row } => {
                let (n, ty, tx0) = p.row_vector(v, per_row);
                let x0 = 2 * tx0;
                let (k_lo, k_hi) = row_masks(d.w, x0);
                for i in 0..2 {
                    let oy = 2 * ty + i;
                    if oy >= d.h {
                        break;
                    }
                    let base = ((n * d.o + o) * d.h + oy) * d.w + x0;
                    assert!(base + (d.w - x0).min(2 * L) <= dy.len());
                    // SAFETY: the masks keep the loads inside row oy (asserted above)
                    let (a, b) = unsafe {
                        let s = dy.as_ptr().add(base);
                        (_mm512_maskz_loadu_ps(k_lo, s), _mm512_maskz_loadu_ps(k_hi, s.add(L)))
                    };
                    y[2 * i] = _mm512_permutex2var_ps(a, even, b);
                    y[2 * i + 1] = _mm512_permutex2var_ps(a, odd, b);
                }
            }
            Lanes::Flat => {
                let mut ys = [[0f32; L]; 4];
                for (lane, og) in org[v * L..(v + 1) * L].iter().enumerate() {
                    let Some((n, oy, ox)) = *og else { break };
                    let base = ((n * d.o + o) * d.h + oy) * d.w + ox;
                    let (down, right) = (oy + 1 < d.h, ox + 1 < d.w);
                    ys[0][lane] = dy[base];
                    if right {
                        ys[1][lane] = dy[base + 1];
                    }
                    if down {
                        ys[2][lane] = dy[base + d.w];
                        if right {
                            ys[3][lane] = dy[base + d.w + 1];
                        }
                    }
                }
                for (yv, ysv) in y.iter_mut().zip(&ys) {
                    // SAFETY: 16 floats
                    *yv = unsafe { _mm512_loadu_ps(ysv.as_ptr()) };
                }
            }
        }
        // along each row: e_i = [y_i0, y_i0 + y_i1, y_i0 − y_i1, −y_i1]
        let zero = _mm512_setzero_ps();
        let e = |a: __m512, b: __m512| {
            [a, _mm512_add_ps(a, b), _mm512_sub_ps(a, b), _mm512_sub_ps(zero, b)]
        };
        let (e0, e1) = (e(y[0], y[1]), e(y[2], y[3]));
        for q in 0..4 {
            let col = [
                e0[q],
                _mm512_add_ps(e0[q], e1[q]),
                _mm512_sub_ps(e0[q], e1[q]),
                _mm512_sub_ps(zero, e1[q]),
            ];
            for (r, &val) in col.iter().enumerate() {
                let at = (r * 4 + q) * ld + v * L;
                // SAFETY: at + 16 ≤ 16·ld (asserted above)
                unsafe { _mm512_storeu_ps(mo.as_mut_ptr().add(at), val) };
            }
        }
    }
}

/// The convolution of `x` with the filters `w (O, C, 3, 3)`, or with `flip`, with the
/// flipped and transposed filters of `w (C, O, 3, 3)`.
pub(super) fn conv3x3(
    x: &[f32],
    w: &[f32],
    d: &Dims,
    flip: bool,
    epi: Option<&Affine<'_, f32>>,
) -> Option<Vec<f32>> {
    let p = Plan::new(d);
    assert_eq!(w.len(), d.o * d.c * 9, "winograd: weight length");
    let pad_len = padded_len(&p)?;
    // U of w's filters, [ξ][o of w][c of w], both padded to the micro-kernel's 8 rows
    let (of, cf) = if flip { (d.c, d.o) } else { (d.o, d.c) };
    let (o8, c8) = (of.div_ceil(MR) * MR, cf.div_ceil(MR) * MR);
    let u_len = 16 * o8 * c8;
    let vlen = 16 * d.c * p.nb * L;
    let vall_len = if p.slices == 1 { 0 } else { p.blocks * vlen };
    Some(with_big(pad_len + u_len + vall_len, |big| {
        let (pad, rest) = big.split_at_mut(pad_len);
        let (u, vall) = rest.split_at_mut(u_len);
        fill_padded(x, &p, pad);
        // SAFETY: AVX-512F was detected (`KernelPolicy::effective`)
        unsafe { filters(w, (of, cf), (o8, c8), u) };
        let u = Filt { u: &*u, plane: o8 * c8, ld: c8, flip };
        let pad = &*pad;
        let len = d.n * d.o * d.h * d.w;
        let mut out: Vec<f32> = Vec::with_capacity(len);
        let ptr = Out(out.as_mut_ptr());
        let slice = |s: usize| (s * p.obn / p.slices, (s + 1) * p.obn / p.slices);
        // a product buffer (with room to align it) for `groups` channel groups of a block
        let mlen = |groups: usize| 16 * groups * MR * p.nb * L + L;
        if p.slices == 1 {
            // each block transforms its tiles into a buffer that stays in cache
            (0..p.blocks).into_par_iter().for_each(|b| {
                <f32 as crate::cpu::Float>::with_scratch(vlen + L, mlen(p.obn), |vb, mb| {
                    let vb = aligned(vb, vlen);
                    // SAFETY: AVX-512F was detected; the block writes only its own tiles
                    unsafe {
                        transform_block(&p, pad, b, 0, vb);
                        products(&p, vb, &u, b, (0, p.obn), mb, (ptr, epi));
                    }
                })
            });
        } else {
            // few tiles, many channels: every block's tiles transformed once (split over
            // channels), then the products split over channel groups as well
            let per = d.c.div_ceil(4 * rayon::current_num_threads().max(1)).max(1);
            vall.par_chunks_mut(vlen).enumerate().for_each(|(b, vb)| {
                vb.par_chunks_mut(16 * p.nb * L * per).enumerate().for_each(|(k, chunk)| {
                    // SAFETY: AVX-512F was detected
                    unsafe { transform_block(&p, pad, b, k * per, chunk) }
                })
            });
            (0..p.blocks * p.slices).into_par_iter().for_each(|item| {
                let (b, s) = (item / p.slices, item % p.slices);
                let (ob_lo, ob_hi) = slice(s);
                let vb = &vall[b * vlen..(b + 1) * vlen];
                <f32 as crate::cpu::Float>::with_scratch(0, mlen(ob_hi - ob_lo), |_, mb| {
                    // SAFETY: AVX-512F was detected; the item writes only its tiles × channels
                    unsafe { products(&p, vb, &u, b, (ob_lo, ob_hi), mb, (ptr, epi)) };
                })
            });
        }
        // SAFETY: the blocks cover every (image, channel, pixel) exactly once (tiles partition
        // each image, slices partition the channels), so all `len` elements are written
        unsafe { out.set_len(len) };
        out
    }))
}

/// Flat mode, per lane of a block's vectors: where its tile's window starts in the padded
/// input, and its output origin `(image, row, column)` (`None` past the last tile).
#[allow(clippy::type_complexity)]
fn flat_lanes(p: &Plan, b: usize, nbv: usize) -> (Vec<i32>, Vec<Option<(usize, usize, usize)>>) {
    let plane = p.hp * p.wp;
    let per = p.th * p.tw;
    let mut idx = vec![0i32; nbv * L];
    let mut org = vec![None; nbv * L];
    for (k, (ix, og)) in idx.iter_mut().zip(&mut org).enumerate() {
        let t = b * p.nb * L + k;
        if t < p.tiles {
            let (n, r) = (t / per, t % per);
            let (ty, tx) = (r / p.tw, r % p.tw);
            // < i32::MAX: checked in conv3x3
            *ix = (n * p.d.c * plane + 2 * ty * p.wp + 2 * tx) as i32;
            *og = Some((n, 2 * ty, 2 * tx));
        }
    }
    (idx, org)
}

/// The transformed input tiles of block `b`, channels `c_lo..` (as many as `vb` holds):
/// `vb[((c − c_lo)·16 + ξ)·nbt + tile]` with `nbt = 16·nb`.
#[target_feature(enable = "avx512f")]
fn transform_block(p: &Plan, pad: &[f32], b: usize, c_lo: usize, vb: &mut [f32]) {
    let nbv = p.nb.min(p.vectors - b * p.nb);
    let nbt = p.nb * L;
    match p.lanes {
        Lanes::Flat => {
            let (idx, _) = flat_lanes(p, b, nbv);
            input_flat(p, pad, &idx, c_lo, vb, nbt);
        }
        Lanes::Rows { per_row } => input_rows(p, pad, b * p.nb, nbv, per_row, c_lo, vb, nbt),
    }
}

/// Block `b`'s products and outputs for the channel groups `ob_lo..ob_hi`, from its
/// transformed tiles `vb` (all channels; see [`transform_block`]).
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn products(
    p: &Plan,
    vb: &[f32],
    u: &Filt<'_>,
    b: usize,
    (ob_lo, ob_hi): (usize, usize),
    mb: &mut [f32],
    (out, epi): (Out, Option<&Affine<'_, f32>>),
) {
    let d = p.d;
    let nbv = p.nb.min(p.vectors - b * p.nb);
    let nbt = p.nb * L;
    let rows = (ob_hi - ob_lo) * MR;
    let org = match p.lanes {
        Lanes::Flat => flat_lanes(p, b, nbv).1,
        Lanes::Rows { .. } => Vec::new(),
    };
    {
        let mb = aligned(mb, 16 * rows * nbt);
        for xi in 0..16 {
            let vx = &vb[xi * nbt..];
            for ob in ob_lo..ob_hi {
                let ug = u.rows(xi, ob * MR);
                let m0 = (xi * rows + (ob - ob_lo) * MR) * nbt;
                let mx = &mut mb[m0..m0 + MR * nbt];
                let mut v = 0;
                while v + 2 <= nbv {
                    kernel::<2>(ug, d.c, (&vx[v * L..], 16 * nbt), (&mut mx[v * L..], nbt));
                    v += 2;
                }
                if v < nbv {
                    kernel::<1>(ug, d.c, (&vx[v * L..], 16 * nbt), (&mut mx[v * L..], nbt));
                }
            }
        }
        let o_lo = ob_lo * MR;
        let o_hi = (ob_hi * MR).min(d.o);
        for o in o_lo..o_hi {
            for v in 0..nbv {
                let mut y = output_transform(mb, (o - o_lo) * nbt + v * L, rows * nbt);
                if let Some(e) = epi {
                    // eval batch norm (+ ReLU) while the outputs are in registers
                    let (a, b) = (_mm512_set1_ps(e.scale[o]), _mm512_set1_ps(e.shift[o]));
                    for yv in y.iter_mut() {
                        *yv = _mm512_fmadd_ps(*yv, a, b);
                        if e.relu {
                            *yv = _mm512_max_ps(*yv, _mm512_setzero_ps());
                        }
                    }
                }
                match p.lanes {
                    Lanes::Flat => store_flat(p, &y, &org[v * L..(v + 1) * L], o, out),
                    Lanes::Rows { per_row } => {
                        store_rows(p, &y, p.row_vector(b * p.nb + v, per_row), o, out)
                    }
                }
            }
        }
    }
}

/// `V = Bᵀ·d·B` of one vector of tiles from their 4×4 windows `dd[r][q]`, stored at
/// `vb[(ξ·C + c)·nbt + at ..]`.
#[target_feature(enable = "avx512f")]
fn transform_store(dd: &[[__m512; 4]; 4], vb: &mut [f32], stride: usize, at: usize) {
    assert!(at + 15 * stride + L <= vb.len());
    // Bᵀ·d (down the rows), then ·B (along them)
    let mut t = [[_mm512_setzero_ps(); 4]; 4];
    for q in 0..4 {
        t[0][q] = _mm512_sub_ps(dd[0][q], dd[2][q]);
        t[1][q] = _mm512_add_ps(dd[1][q], dd[2][q]);
        t[2][q] = _mm512_sub_ps(dd[2][q], dd[1][q]);
        t[3][q] = _mm512_sub_ps(dd[1][q], dd[3][q]);
    }
    for (r, tr) in t.iter().enumerate() {
        let e = [
            _mm512_sub_ps(tr[0], tr[2]),
            _mm512_add_ps(tr[1], tr[2]),
            _mm512_sub_ps(tr[2], tr[1]),
            _mm512_sub_ps(tr[1], tr[3]),
        ];
        for (q, &ev) in e.iter().enumerate() {
            // SAFETY: in bounds (asserted above)
            unsafe { _mm512_storeu_ps(vb.as_mut_ptr().add((r * 4 + q) * stride + at), ev) };
        }
    }
}

/// Flat mode: the 4×4 windows gathered lane by lane.
#[target_feature(enable = "avx512f")]
fn input_flat(p: &Plan, pad: &[f32], idx: &[i32], c_lo: usize, vb: &mut [f32], nbt: usize) {
    let (plane, wp) = (p.hp * p.wp, p.wp);
    let c_n = vb.len() / (16 * nbt);
    let offs: Vec<__m512i> = idx
        .chunks_exact(L)
        // SAFETY: 16 i32 each
        .map(|ch| unsafe { _mm512_loadu_si512(ch.as_ptr().cast()) })
        .collect();
    assert!(offs.len() * L <= nbt && c_lo + c_n <= p.d.c);
    for c in 0..c_n {
        // every gathered offset + c·plane + 3·wp + 3 lies inside `pad` (see `flat_lanes`)
        let base = pad[(c_lo + c) * plane..].as_ptr();
        for (v, &ix) in offs.iter().enumerate() {
            let mut dd = [[_mm512_setzero_ps(); 4]; 4];
            for (r, row) in dd.iter_mut().enumerate() {
                for (q, e) in row.iter_mut().enumerate() {
                    // SAFETY: see above
                    *e = unsafe { _mm512_i32gather_ps::<4>(ix, base.add(r * wp + q)) };
                }
            }
            transform_store(&dd, vb, nbt, c * 16 * nbt + v * L);
        }
    }
}

/// Row mode: the windows of 16 neighbouring tiles from 4 contiguous loads per window row,
/// split into even and odd columns.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
fn input_rows(
    p: &Plan,
    pad: &[f32],
    v0: usize,
    nbv: usize,
    per_row: usize,
    c_lo: usize,
    vb: &mut [f32],
    nbt: usize,
) {
    let (plane, wp) = (p.hp * p.wp, p.wp);
    let c_n = vb.len() / (16 * nbt);
    assert!(c_lo + c_n <= p.d.c);
    let (even, odd) = even_odd();
    for v in 0..nbv {
        let (n, ty, tx0) = p.row_vector(v0 + v, per_row);
        for c in 0..c_n {
            let at = (n * p.d.c + c_lo + c) * plane + 2 * ty * wp + 2 * tx0;
            // the last read ends at at + 3·wp + 34 ≤ the padded input + SLACK
            assert!(at + 3 * wp + 2 * L + 2 <= pad.len());
            let mut dd = [[_mm512_setzero_ps(); 4]; 4];
            for (r, row) in dd.iter_mut().enumerate() {
                // SAFETY: in bounds (asserted above)
                let (a, b, a2, b2) = unsafe {
                    let s = pad.as_ptr().add(at + r * wp);
                    (
                        _mm512_loadu_ps(s),
                        _mm512_loadu_ps(s.add(L)),
                        _mm512_loadu_ps(s.add(2)),
                        _mm512_loadu_ps(s.add(L + 2)),
                    )
                };
                row[0] = _mm512_permutex2var_ps(a, even, b);
                row[1] = _mm512_permutex2var_ps(a, odd, b);
                row[2] = _mm512_permutex2var_ps(a2, even, b2);
                row[3] = _mm512_permutex2var_ps(a2, odd, b2);
            }
            transform_store(&dd, vb, nbt, c * 16 * nbt + v * L);
        }
    }
}

/// `Aᵀ·m·A` of 16 tiles from `mb[ξ·stride + at ..]`: the 2×2 outputs `[y00, y01, y10, y11]`.
#[target_feature(enable = "avx512f")]
fn output_transform(mb: &[f32], at: usize, stride: usize) -> [__m512; 4] {
    assert!(at + 15 * stride + L <= mb.len());
    let mut m = [_mm512_setzero_ps(); 16];
    for (xi, v) in m.iter_mut().enumerate() {
        // SAFETY: in bounds (asserted above)
        *v = unsafe { _mm512_loadu_ps(mb.as_ptr().add(xi * stride + at)) };
    }
    let mut s = [[_mm512_setzero_ps(); 4]; 2];
    for q in 0..4 {
        s[0][q] = _mm512_add_ps(_mm512_add_ps(m[q], m[4 + q]), m[8 + q]);
        s[1][q] = _mm512_sub_ps(_mm512_sub_ps(m[4 + q], m[8 + q]), m[12 + q]);
    }
    let mut y = [_mm512_setzero_ps(); 4];
    for (i, si) in s.iter().enumerate() {
        y[2 * i] = _mm512_add_ps(_mm512_add_ps(si[0], si[1]), si[2]);
        y[2 * i + 1] = _mm512_sub_ps(_mm512_sub_ps(si[1], si[2]), si[3]);
    }
    y
}

/// Flat mode: writes 16 tiles' 2×2 outputs of channel `o` lane by lane (pixels past the
/// image's edge dropped).
#[target_feature(enable = "avx512f")]
fn store_flat(
    p: &Plan,
    y: &[__m512; 4],
    org: &[Option<(usize, usize, usize)>],
    o: usize,
    out: Out,
) {
    let d = p.d;
    let mut ys = [[0f32; L]; 4];
    for (dst, &v) in ys.iter_mut().zip(y) {
        // SAFETY: 16 floats
        unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), v) };
    }
    for (lane, og) in org.iter().enumerate() {
        let Some((n, oy, ox)) = *og else { break };
        let base = ((n * d.o + o) * d.h + oy) * d.w + ox;
        let (down, right) = (oy + 1 < d.h, ox + 1 < d.w);
        // SAFETY: (n, o, oy, ox) and its in-image neighbours index the n·o·h·w output;
        // this block alone writes them
        unsafe {
            *out.0.add(base) = ys[0][lane];
            if right {
                *out.0.add(base + 1) = ys[1][lane];
            }
            if down {
                *out.0.add(base + d.w) = ys[2][lane];
                if right {
                    *out.0.add(base + d.w + 1) = ys[3][lane];
                }
            }
        }
    }
}

/// Row mode: interleaves the outputs of 16 neighbouring tiles into two output rows of up
/// to 32 pixels each (masked at the image's right edge).
#[target_feature(enable = "avx512f")]
fn store_rows(p: &Plan, y: &[__m512; 4], (n, ty, tx0): (usize, usize, usize), o: usize, out: Out) {
    let d = p.d;
    let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let x0 = 2 * tx0;
    let (k_lo, k_hi) = row_masks(d.w, x0);
    for i in 0..2 {
        let oy = 2 * ty + i;
        if oy >= d.h {
            break;
        }
        let a = _mm512_permutex2var_ps(y[2 * i], lo, y[2 * i + 1]);
        let b = _mm512_permutex2var_ps(y[2 * i], hi, y[2 * i + 1]);
        let base = ((n * d.o + o) * d.h + oy) * d.w + x0;
        // SAFETY: the masks keep the stores inside row oy of channel o of image n; this
        // block alone writes them
        unsafe {
            _mm512_mask_storeu_ps(out.0.add(base), k_lo, a);
            _mm512_mask_storeu_ps(out.0.add(base + L), k_hi, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_transform_of_a_delta_filter_and_its_adjoint() {
        if crate::Simd::detect() < crate::Simd::Avx512 {
            return;
        }
        // the centre tap alone: U's middle 2×2 is ±¼, its border 0 (padded rows too)
        let mut g = [0f32; 9];
        g[4] = 1.;
        let mut u = [f32::NAN; 128];
        // SAFETY: AVX-512F is there (checked above)
        unsafe { filters_for_test(&g, &mut u) };
        let expect = [0., 0., 0., 0., 0., 0.25, -0.25, 0., 0., -0.25, 0.25, 0., 0., 0., 0., 0.];
        for (xi, e) in expect.iter().enumerate() {
            assert_eq!(u[xi * 8], *e, "ξ {xi}");
            assert!(u[xi * 8 + 1..xi * 8 + 8].iter().all(|&v| v == 0.), "ξ {xi}: padding");
        }
        // ⟨G·g·Gᵀ, dU⟩ = ⟨g, Gᵀ·dU·G⟩ for any g and dU
        let gs: Vec<f32> = (0..9).map(|k| (k as f32 * 0.7).sin()).collect();
        let du: Vec<f32> = (0..16).map(|k| (k as f32 * 1.3).cos()).collect();
        let mut u = [0f32; 128];
        // SAFETY: as above
        let dw = unsafe {
            filters_for_test(&gs, &mut u);
            filter_grads_for_test(&du)
        };
        let lhs: f32 = (0..16).map(|xi| u[xi * 8] * du[xi]).sum();
        let rhs: f32 = gs.iter().zip(&dw).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-5, "{lhs} vs {rhs}");
    }
}
