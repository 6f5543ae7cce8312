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
//! loads and combined by permutes (AVX-512F) or 4×4 transposes (AVX2), its outputs interleaved
//! back the same way ([`Isa::quarter_windows`], [`Isa::store_quarters`]). f32 only, on x86-64
//! CPUs with AVX-512F or AVX2 + FMA, one source for both through [`Isa`].

#![allow(unsafe_code)]

use rayon::prelude::*;

use super::simd::{aligned, filter_grads_by, filters_by, Isa, Out, L, MR};
use super::{fill_padded_plane, with_big, Dims};
use crate::cpu::Affine;
use crate::gemm::{matmul, Mat, Parallelism};

/// Column `j` of the rows `a`: `a[0][j], a[1][j], …` (no closures in code that runs inside
/// [`Isa::enter`]: see [`super::simd`]).
#[inline(always)]
fn column<V: Copy, const R: usize, const C: usize>(a: &[[V; C]; R], j: usize) -> [V; R] {
    let mut out = [a[0][j]; R];
    for (o, row) in out.iter_mut().zip(a) {
        *o = row[j];
    }
    out
}

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
    #[inline(always)]
    fn quarter(&self, k: usize) -> (usize, usize, usize) {
        let per_row = self.tw / 4;
        let (n, r) = (k / (self.th * per_row), k % (self.th * per_row));
        (n, r / per_row, (r % per_row) * 4)
    }
}

pub(super) fn conv3x3<I: Isa>(
    s: I,
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
        filters(s, w, (d.o, d.c), (o8, c8), u);
        let (pad, u) = (&*pad, &*u);
        let len = d.n * d.o * d.h * d.w;
        let mut out: Vec<f32> = Vec::with_capacity(len);
        let ptr = Out(out.as_mut_ptr());
        if slices == 1 {
            (0..p.blocks).into_par_iter().for_each(|b| {
                <f32 as crate::cpu::Float>::with_scratch(vlen + L, mlen(obn) + L, |vb, mb| {
                    let vb = aligned(vb, vlen);
                    let mb = aligned(mb, mlen(obn));
                    s.enter(
                        #[inline(always)]
                        || {
                            transform_block(s, &p, pad, b, 0, vb);
                            // SAFETY: the block writes only its own tiles
                            unsafe { products(s, &p, vb, (u, c8), b, (0, obn), mb, (ptr, epi)) };
                        },
                    )
                })
            });
        } else {
            // every block's tiles transformed once (split over channels), then the
            // products split over (block, slice of channel groups)
            let per = d.c.div_ceil(want).max(1);
            vall.par_chunks_mut(vlen).enumerate().for_each(|(b, vb)| {
                vb.par_chunks_mut(XI * nbt * per).enumerate().for_each(|(k, chunk)| {
                    s.enter(
                        #[inline(always)]
                        || transform_block(s, &p, pad, b, k * per, chunk),
                    )
                })
            });
            let vall = &*vall;
            (0..p.blocks * slices).into_par_iter().for_each(|item| {
                let (b, sl) = (item / slices, item % slices);
                let (lo, hi) = (sl * obn / slices, (sl + 1) * obn / slices);
                let vb = &vall[b * vlen..(b + 1) * vlen];
                <f32 as crate::cpu::Float>::with_scratch(0, mlen(hi - lo) + L, |_, mb| {
                    let mb = aligned(mb, mlen(hi - lo));
                    s.enter(
                        #[inline(always)]
                        || {
                            // SAFETY: the item writes only its tiles of its channels
                            unsafe { products(s, &p, vb, (u, c8), b, (lo, hi), mb, (ptr, epi)) };
                        },
                    )
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
fn filters<I: Isa>(s: I, w: &[f32], oc: (usize, usize), pads: (usize, usize), u: &mut [f32]) {
    filters_by::<I, XI>(
        s,
        w,
        oc,
        pads,
        u,
        #[inline(always)]
        |w_row, plane, at, out| filters_row(s, w_row, plane, at, out),
    )
}

/// `G·v` for the three values of a filter column or row: six values.
#[inline(always)]
fn g6<I: Isa>(s: I, a: I::V, b: I::V, c: I::V) -> [I::V; 6] {
    let sixth = s.splat(1. / 6.);
    let (quarter, twelfth, twentyfourth) = (s.splat(0.25), s.splat(1. / 12.), s.splat(1. / 24.));
    let ac = s.add(a, c);
    // (a/24 + c/6) ± b/12
    let e = s.fmadd(a, twentyfourth, s.mul(c, sixth));
    let f = s.mul(b, twelfth);
    [
        s.mul(a, quarter),
        s.mul(s.add(ac, b), s.splat(-1. / 6.)),
        s.mul(s.sub(ac, b), s.splat(-1. / 6.)),
        s.add(e, f),
        s.sub(e, f),
        c,
    ]
}

/// Row `w_row` (`c` filters) of [`filters`], written at `at` of every plane.
#[inline(always)]
fn filters_row<I: Isa>(s: I, w_row: &[f32], plane: usize, at: usize, ptr: Out) {
    let c = w_row.len() / 9;
    for c0 in (0..c).step_by(L) {
        let count = (c - c0).min(L);
        let g = s.filter_taps(w_row, c0, count);
        // G·g down the columns: t[i][j], then ·Gᵀ along each row
        let (c0s, c1s, c2s) =
            (g6(s, g[0], g[3], g[6]), g6(s, g[1], g[4], g[7]), g6(s, g[2], g[5], g[8]));
        for (i, ((&a, &b), &cc)) in c0s.iter().zip(&c1s).zip(&c2s).enumerate() {
            let row = g6(s, a, b, cc);
            for (j, &val) in row.iter().enumerate() {
                // SAFETY: the first `count` lanes lie in row o of plane 6i + j; this task
                // alone writes that row
                unsafe { s.store_first(ptr.add((i * 6 + j) * plane + at + c0), count, val) };
            }
        }
    }
}

/// `Bᵀ·v` of six values of an input tile column or row.
#[inline(always)]
fn bt6<I: Isa>(s: I, d: &[I::V; 6]) -> [I::V; 6] {
    let (four, five, two) = (s.splat(4.), s.splat(5.), s.splat(2.));
    let t1 = s.fnmadd(four, d[2], d[4]); // d4 − 4·d2
    let t2 = s.fnmadd(four, d[1], d[3]); // d3 − 4·d1
    let t3 = s.sub(d[4], d[2]);
    let t4 = s.mul(two, s.sub(d[3], d[1]));
    [
        s.fmadd(four, d[0], s.fnmadd(five, d[2], d[4])),
        s.add(t1, t2),
        s.sub(t1, t2),
        s.add(t3, t4),
        s.sub(t3, t4),
        s.fmadd(four, d[1], s.fnmadd(five, d[3], d[5])),
    ]
}

/// `Aᵀ·v` of six values of a product tile column or row: four outputs.
#[inline(always)]
fn at4<I: Isa>(s: I, m: &[I::V; 6]) -> [I::V; 4] {
    let (s12, d12) = (s.add(m[1], m[2]), s.sub(m[1], m[2]));
    let (s34, d34) = (s.add(m[3], m[4]), s.sub(m[3], m[4]));
    [
        s.add(s.add(m[0], s12), s34),
        s.fmadd(s.splat(2.), d34, d12),
        s.fmadd(s.splat(4.), s34, s12),
        s.add(s.fmadd(s.splat(8.), d34, d12), m[5]),
    ]
}

/// Where vector `v`'s four quarters (lanes `4k..4k + 4`) start in the padded input
/// (channel 0) and in the output (channel 0, row 0 of the tiles); `None` past the last.
#[inline(always)]
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

/// The lanes of the quarters that are there.
#[inline(always)]
fn live_lanes(origins: &[Option<(usize, usize, usize)>; 4]) -> u16 {
    origins
        .iter()
        .enumerate()
        .fold(0u16, |m, (k, o)| if o.is_some() { m | (0xf << (4 * k)) } else { m })
}

/// The transformed input tiles of block `b`, channels `c_lo..` (as many as `vb` holds):
/// `vb[((c − c_lo)·36 + ξ)·nbt + tile]`, `nbt = 16·nb`.
#[inline(always)]
fn transform_block<I: Isa>(s: I, p: &Plan, pad: &[f32], b: usize, c_lo: usize, vb: &mut [f32]) {
    let nbv = p.nb.min(p.vectors - b * p.nb);
    let nbt = p.nb * L;
    let c_n = vb.len() / (XI * nbt);
    assert!(c_lo + c_n <= p.d.c);
    for v in 0..nbv {
        let origins = vector_origins(p, b * p.nb + v);
        let Some((a0, _, _)) = origins[0] else { continue };
        // a missing quarter reads quarter 0 again; its lanes are zeroed
        let at = origins.map(|o| o.map_or(a0, |o| o.0));
        let live = live_lanes(&origins);
        for c in 0..c_n {
            let off = (c_lo + c) * p.plane;
            // a quarter's window rows: 21 floats from its origin, the last read ending at
            // origin + 5·wp + 21 ≤ the padded input + SLACK
            assert!(at.iter().max().unwrap_or(&a0) + off + 5 * p.wp + 5 + L <= pad.len());
            // Bᵀ·d down the columns (cols[q][r]), then ·B along the rows
            let mut rows = [[s.zero(); 6]; 6];
            for (r, row) in rows.iter_mut().enumerate() {
                let mut ptrs = [pad.as_ptr(); 4];
                for (pt, &a) in ptrs.iter_mut().zip(&at) {
                    *pt = pad.as_ptr().wrapping_add(a + off + r * p.wp);
                }
                // SAFETY: in bounds (asserted above)
                *row = unsafe { s.quarter_windows(ptrs, live) };
            }
            let mut cols = [[s.zero(); 6]; 6];
            for (q, col) in cols.iter_mut().enumerate() {
                *col = bt6(s, &column(&rows, q));
            }
            for r in 0..6 {
                let row = bt6(s, &column(&cols, r));
                for (q, &val) in row.iter().enumerate() {
                    let at = (c * XI + r * 6 + q) * nbt + v * L;
                    // SAFETY: at + 16 ≤ 36·c_n·nbt ≤ vb.len()
                    unsafe { s.store(vb.as_mut_ptr().add(at), val) };
                }
            }
        }
    }
}

/// Block `b`'s products, output transform, epilogue and stores, from its transformed
/// tiles `vb` (see [`transform_block`]) and the transformed filters `u` (rows of `c8`).
///
/// # Safety
/// `out` holds the `(n, o, h, w)` output; no other thread writes these tiles' outputs of
/// these channels.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn products<I: Isa>(
    s: I,
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
                s.kernel::<2>(ug, d.c, (&vx[v * L..], XI * nbt), (&mut mx[v * L..], nbt));
                v += 2;
            }
            if v < nbv {
                s.kernel::<1>(ug, d.c, (&vx[v * L..], XI * nbt), (&mut mx[v * L..], nbt));
            }
        }
    }
    for o in ob_lo * MR..(ob_hi * MR).min(d.o) {
        for v in 0..nbv {
            let mut y = output_transform(s, mb, (o - ob_lo * MR) * nbt + v * L, rows * nbt);
            if let Some(e) = epi {
                // eval batch norm (+ ReLU) while the outputs are in registers
                let (a, sh) = (s.splat(e.scale[o]), s.splat(e.shift[o]));
                for yv in y.iter_mut().flatten() {
                    *yv = s.fmadd(*yv, a, sh);
                    if e.relu {
                        *yv = s.max(*yv, s.zero());
                    }
                }
            }
            // SAFETY: the vector's quarters lie in this block, which alone writes them
            unsafe { store(s, p, &y, vector_origins(p, b * p.nb + v), o, out) };
        }
    }
}

/// `Aᵀ·m·A` of 16 tiles from `mb[ξ·stride + at ..]`: `y[i][j]`, output row `i`, column `j`.
#[inline(always)]
fn output_transform<I: Isa>(s: I, mb: &[f32], at: usize, stride: usize) -> [[I::V; 4]; 4] {
    assert!(at + (XI - 1) * stride + L <= mb.len());
    let ptr = mb.as_ptr();
    // Aᵀ·m down the columns (cols[q][i]), then ·A along the rows
    let mut cols = [[s.zero(); 4]; 6];
    for (q, col) in cols.iter_mut().enumerate() {
        let mut m = [s.zero(); 6];
        for (r, mr) in m.iter_mut().enumerate() {
            // SAFETY: in bounds (asserted above)
            *mr = unsafe { s.load(ptr.add((r * 6 + q) * stride + at)) };
        }
        *col = at4(s, &m);
    }
    let mut y = [[s.zero(); 4]; 4];
    for (i, yi) in y.iter_mut().enumerate() {
        *yi = at4(s, &column(&cols, i));
    }
    y
}

/// Writes 16 tiles' 4×4 outputs of channel `o`: per output row, each quarter's 4 tiles
/// interleaved into 16 contiguous pixels.
///
/// # Safety
/// `out` holds the `(n, o, h, w)` output; no other thread writes these tiles.
#[inline(always)]
unsafe fn store<I: Isa>(
    s: I,
    p: &Plan,
    y: &[[I::V; 4]; 4],
    quarters: [Option<(usize, usize, usize)>; 4],
    o: usize,
    out: Out,
) {
    let d = p.d;
    for (i, yi) in y.iter().enumerate() {
        // row 4·ty + i of channel o of image n, pixels 4·tx0 .. 4·tx0 + 16, inside the image
        // (the width is a multiple of 16)
        let dst =
            quarters.map(|q| q.map(|(_, n, at)| out.add((n * d.o + o) * d.h * d.w + at + i * d.w)));
        // SAFETY: see above; this block alone writes them (the caller's contract)
        unsafe { s.store_quarters(yi, dst) };
    }
}

pub(super) fn weight_grad<I: Isa>(s: I, x: &[f32], dy: &[f32], d: &Dims) -> Option<Vec<f32>> {
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
            s.enter(
                #[inline(always)]
                || transform_block(s, &all, pad, 0, k * per, chunk),
            )
        });
        m.par_chunks_mut(XI * ld).enumerate().for_each(|(o, mo)| {
            s.enter(
                #[inline(always)]
                || grad_transform(s, &p, dy, o, mo, ld),
            )
        });
        // dU[ξ] (O×C) = dM[ξ] (O×T) · V[ξ]ᵀ (T×C), one packed product per ξ (the lanes
        // past the last tile are zero in both)
        du.par_chunks_mut(d.o * d.c).enumerate().for_each(|(xi, out)| {
            let lhs = Mat { data: &m[xi * ld..], rs: XI * ld, cs: 1 };
            let rhs = Mat { data: &v[xi * ld..], rs: 1, cs: XI * ld };
            matmul(d.o, d.c, tp, out, d.c, false, lhs, rhs, Parallelism::None, I::SIMD);
        });
        filter_grads(s, du, d.o * d.c)
    }))
}

/// `A·v` of four output-gradient values of a tile column or row: six values (the adjoint
/// of [`at4`]).
#[inline(always)]
fn a6<I: Isa>(s: I, y: &[I::V; 4]) -> [I::V; 6] {
    let (e, o) = (s.add(y[0], y[2]), s.add(y[1], y[3]));
    let e4 = s.fmadd(s.splat(4.), y[2], y[0]);
    let o8 = s.fmadd(s.splat(8.), y[3], s.mul(s.splat(2.), y[1]));
    [y[0], s.add(e, o), s.sub(e, o), s.add(e4, o8), s.sub(e4, o8), y[3]]
}

/// `dM = A·dY·Aᵀ` of every tile for output channel `o`: `mo[ξ·ld + tile]`; the lanes of
/// missing quarters get 0.
#[inline(always)]
fn grad_transform<I: Isa>(s: I, p: &Plan, dy: &[f32], o: usize, mo: &mut [f32], ld: usize) {
    let d = p.d;
    assert!(mo.len() == XI * ld && p.vectors * L <= ld);
    for v in 0..p.vectors {
        let quarters = vector_origins(p, v);
        let Some((_, n0, at0)) = quarters[0] else { continue };
        let live = live_lanes(&quarters);
        // a missing quarter reads quarter 0 again; its lanes are zeroed
        let base = quarters.map(|q| {
            let (n, at) = q.map_or((n0, at0), |(_, n, at)| (n, at));
            (n * d.o + o) * d.h * d.w + at
        });
        assert!(base.iter().all(|b| b + 3 * d.w + L <= dy.len()));
        // y[i][j]: row i, column j of the 16 tiles' output gradients
        let mut y = [[s.zero(); 4]; 4];
        for (i, yi) in y.iter_mut().enumerate() {
            let mut ptrs = [dy.as_ptr(); 4];
            for (pt, &b) in ptrs.iter_mut().zip(&base) {
                *pt = dy.as_ptr().wrapping_add(b + i * d.w);
            }
            // SAFETY: row 4·ty + i of channel o of image n, 16 pixels from 4·tx0 (asserted
            // above)
            *yi = unsafe { s.quarter_rows(ptrs, live) };
        }
        // A·dY down the columns (cols[j][a]), then ·Aᵀ along the rows
        let mut cols = [[s.zero(); 6]; 4];
        for (j, col) in cols.iter_mut().enumerate() {
            *col = a6(s, &column(&y, j));
        }
        for a in 0..6 {
            let row = a6(s, &column(&cols, a));
            for (b, &val) in row.iter().enumerate() {
                let at = (a * 6 + b) * ld + v * L;
                // SAFETY: at + 16 ≤ 36·ld (asserted above)
                unsafe { s.store(mo.as_mut_ptr().add(at), val) };
            }
        }
    }
}

/// `Gᵀ·v` of six values of a filter-gradient column or row: three values (the adjoint of
/// [`g6`]).
#[inline(always)]
fn gt3<I: Isa>(s: I, u: &[I::V; 6]) -> [I::V; 3] {
    let (s12, d12) = (s.add(u[1], u[2]), s.sub(u[1], u[2]));
    let (s34, d34) = (s.add(u[3], u[4]), s.sub(u[3], u[4]));
    let sixth = s.splat(1. / 6.);
    let neg_sixth = s.splat(-1. / 6.);
    [
        s.fmadd(u[0], s.splat(0.25), s.fmadd(s12, neg_sixth, s.mul(s34, s.splat(1. / 24.)))),
        s.fmadd(d12, neg_sixth, s.mul(d34, s.splat(1. / 12.))),
        s.add(s.fmadd(s12, neg_sixth, s.mul(s34, sixth)), u[5]),
    ]
}

/// `dW = Gᵀ·dU·G` of every filter from `du[ξ][filter]` (`36 × n`), 16 filters at a time:
/// the weight gradient `(n, 3, 3)`.
fn filter_grads<I: Isa>(s: I, du: &[f32], n: usize) -> Vec<f32> {
    filter_grads_by::<I, XI>(
        s,
        du,
        n,
        #[inline(always)]
        |m| {
            // Gᵀ·dU down the columns (cols[b][k]), then ·G along the rows: k = 3·row + column
            let mut cols = [[s.zero(); 3]; 6];
            for (b, col) in cols.iter_mut().enumerate() {
                let mut mb = [s.zero(); 6];
                for (a, v) in mb.iter_mut().enumerate() {
                    *v = m[6 * a + b];
                }
                *col = gt3(s, &mb);
            }
            let mut g = [s.zero(); 9];
            for k in 0..3 {
                let row = gt3(s, &column(&cols, k));
                g[3 * k..3 * k + 3].copy_from_slice(&row);
            }
            g
        },
    )
}
