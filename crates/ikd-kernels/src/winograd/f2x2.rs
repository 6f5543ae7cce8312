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
//! products with the instruction set's micro-kernel and writes its outputs. f32 only, on x86-64
//! CPUs with AVX-512F or AVX2 + FMA (checked at run time, one source for both through
//! [`Isa`]); everything else takes the im2col path.

#![allow(unsafe_code)]

use rayon::prelude::*;

use super::simd::{aligned, filter_grads_by, filters_by, Isa, Out, L, MR};
use super::{fill_padded_plane, with_big, Dims};
use crate::cpu::Affine;
use crate::gemm::{matmul, Mat, Parallelism};

/// Row `2·tx0 ..` of a 16-tile vector: how many of its first and of its second 16 output
/// pixels lie in the image (up to 32 in all).
fn row_counts(w: usize, x0: usize) -> (usize, usize) {
    let valid = (w - x0).min(2 * L);
    (valid.min(L), valid.saturating_sub(L))
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
    /// stride)` for [`Isa::kernel`].
    #[inline(always)]
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
    #[inline(always)]
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

pub(super) fn weight_grad<I: Isa>(s: I, x: &[f32], dy: &[f32], d: &Dims) -> Option<Vec<f32>> {
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
            s.enter(
                #[inline(always)]
                || transform_block(s, &all, pad, 0, k * per, chunk),
            )
        });
        let org = match p.lanes {
            Lanes::Flat => flat_lanes(&all, 0, p.vectors).1,
            Lanes::Rows { .. } => Vec::new(),
        };
        m.par_chunks_mut(16 * ld).enumerate().for_each(|(o, mo)| {
            s.enter(
                #[inline(always)]
                || grad_transform(s, &p, dy, &org, o, mo, ld),
            )
        });
        // dU[ξ] (O×C) = dM[ξ] (O×T) · V[ξ]ᵀ (T×C): one packed matrix product per ξ (the
        // lanes past the last tile are zero in dM)
        du.par_chunks_mut(d.o * d.c).enumerate().for_each(|(xi, out)| {
            let lhs = Mat { data: &m[xi * ld..], rs: 16 * ld, cs: 1 };
            let rhs = Mat { data: &v[xi * ld..], rs: 1, cs: 16 * ld };
            matmul(d.o, d.c, tp, out, d.c, false, lhs, rhs, Parallelism::None, I::SIMD);
        });
        // dW = Gᵀ·dU·G per filter
        filter_grads(s, du, d.o, d.c)
    }))
}

/// Writes `U = G·g·Gᵀ` of every filter of `w (o, c, 3, 3)` into `u`, laid out
/// `[ξ][o_pad][c_pad]` (padding zero): per row `o`, 16 filters at a time.
fn filters<I: Isa>(s: I, w: &[f32], oc: (usize, usize), pads: (usize, usize), u: &mut [f32]) {
    filters_by::<I, 16>(
        s,
        w,
        oc,
        pads,
        u,
        #[inline(always)]
        |w_row, plane, at, out| filters_row(s, w_row, plane, at, out),
    )
}

/// Row `w_row` (`c` filters) of [`filters`], written at `at` of every plane.
#[inline(always)]
fn filters_row<I: Isa>(s: I, w_row: &[f32], plane: usize, at: usize, ptr: Out) {
    let c = w_row.len() / 9;
    let half = s.splat(0.5);
    for c0 in (0..c).step_by(L) {
        let count = (c - c0).min(L);
        let g = s.filter_taps(w_row, c0, count);
        // G·g (rows a of g → 4 rows), then ·Gᵀ along each row
        let mut t = [[s.zero(); 3]; 4];
        for j in 0..3 {
            let (a, b, cc) = (g[j], g[3 + j], g[6 + j]);
            let ac = s.add(a, cc);
            t[0][j] = a;
            t[1][j] = s.mul(half, s.add(ac, b));
            t[2][j] = s.mul(half, s.sub(ac, b));
            t[3][j] = cc;
        }
        for (i, ti) in t.iter().enumerate() {
            let ac = s.add(ti[0], ti[2]);
            let row = [ti[0], s.mul(half, s.add(ac, ti[1])), s.mul(half, s.sub(ac, ti[1])), ti[2]];
            for (j, &val) in row.iter().enumerate() {
                // SAFETY: the first `count` lanes lie in row o of plane 4i + j; this task
                // alone writes that row
                unsafe { s.store_first(ptr.add((i * 4 + j) * plane + at + c0), count, val) };
            }
        }
    }
}

/// `dW = Gᵀ·dU·G` of every filter from `du[ξ][o][c]` (`16 × O × C`), 16 filters at a time:
/// the weight gradient `(O, C, 3, 3)`.
fn filter_grads<I: Isa>(s: I, du: &[f32], o: usize, c: usize) -> Vec<f32> {
    filter_grads_by::<I, 16>(
        s,
        du,
        o * c,
        #[inline(always)]
        |m| {
            let half = s.splat(0.5);
            // ·G along each row: t[i][b]
            let mut t = [[s.zero(); 3]; 4];
            for (i, ti) in t.iter_mut().enumerate() {
                let (d0, d1, d2, d3) = (m[4 * i], m[4 * i + 1], m[4 * i + 2], m[4 * i + 3]);
                let sum = s.mul(half, s.add(d1, d2));
                ti[0] = s.add(d0, sum);
                ti[1] = s.mul(half, s.sub(d1, d2));
                ti[2] = s.add(sum, d3);
            }
            // Gᵀ· down the columns: k = 3a + b
            let mut g = [s.zero(); 9];
            for b in 0..3 {
                let sum = s.mul(half, s.add(t[1][b], t[2][b]));
                g[b] = s.add(t[0][b], sum);
                g[3 + b] = s.mul(half, s.sub(t[1][b], t[2][b]));
                g[6 + b] = s.add(sum, t[3][b]);
            }
            g
        },
    )
}

/// `dM = A·dY·Aᵀ` (the adjoint of the output transform) of every tile for output channel
/// `o`: `mo[ξ·ld + tile]`; lanes past the image or the last tile get 0.
#[inline(always)]
fn grad_transform<I: Isa>(
    s: I,
    p: &Plan,
    dy: &[f32],
    org: &[Option<(usize, usize, usize)>],
    o: usize,
    mo: &mut [f32],
    ld: usize,
) {
    let d = p.d;
    assert!(mo.len() == 16 * ld && p.vectors * L <= ld);
    for v in 0..p.vectors {
        // the 2×2 output gradients of 16 tiles: [y00, y01, y10, y11]
        let mut y = [s.zero(); 4];
        match p.lanes {
            Lanes::Rows { per_row } => {
                let (n, ty, tx0) = p.row_vector(v, per_row);
                let x0 = 2 * tx0;
                let (k_lo, k_hi) = row_counts(d.w, x0);
                for i in 0..2 {
                    let oy = 2 * ty + i;
                    if oy >= d.h {
                        break;
                    }
                    let base = ((n * d.o + o) * d.h + oy) * d.w + x0;
                    assert!(base + (d.w - x0).min(2 * L) <= dy.len());
                    // SAFETY: the counts keep the loads inside row oy (asserted above)
                    let (a, b) = unsafe {
                        let src = dy.as_ptr().add(base);
                        (s.load_first(src, k_lo), s.load_first(src.wrapping_add(L), k_hi))
                    };
                    (y[2 * i], y[2 * i + 1]) = s.deinterleave(a, b);
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
                    *yv = unsafe { s.load(ysv.as_ptr()) };
                }
            }
        }
        // along each row: e_i = [y_i0, y_i0 + y_i1, y_i0 − y_i1, −y_i1]
        let zero = s.zero();
        let e0 = [y[0], s.add(y[0], y[1]), s.sub(y[0], y[1]), s.sub(zero, y[1])];
        let e1 = [y[2], s.add(y[2], y[3]), s.sub(y[2], y[3]), s.sub(zero, y[3])];
        for q in 0..4 {
            let col = [e0[q], s.add(e0[q], e1[q]), s.sub(e0[q], e1[q]), s.sub(zero, e1[q])];
            for (r, &val) in col.iter().enumerate() {
                let at = (r * 4 + q) * ld + v * L;
                // SAFETY: at + 16 ≤ 16·ld (asserted above)
                unsafe { s.store(mo.as_mut_ptr().add(at), val) };
            }
        }
    }
}

/// The convolution of `x` with the filters `w (O, C, 3, 3)`, or with `flip`, with the
/// flipped and transposed filters of `w (C, O, 3, 3)`.
pub(super) fn conv3x3<I: Isa>(
    s: I,
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
        filters(s, w, (of, cf), (o8, c8), u);
        let u = Filt { u: &*u, plane: o8 * c8, ld: c8, flip };
        let pad = &*pad;
        let len = d.n * d.o * d.h * d.w;
        let mut out: Vec<f32> = Vec::with_capacity(len);
        let ptr = Out(out.as_mut_ptr());
        let slice = |sl: usize| (sl * p.obn / p.slices, (sl + 1) * p.obn / p.slices);
        // a product buffer (with room to align it) for `groups` channel groups of a block
        let mlen = |groups: usize| 16 * groups * MR * p.nb * L + L;
        if p.slices == 1 {
            // each block transforms its tiles into a buffer that stays in cache
            (0..p.blocks).into_par_iter().for_each(|b| {
                <f32 as crate::cpu::Float>::with_scratch(vlen + L, mlen(p.obn), |vb, mb| {
                    let vb = aligned(vb, vlen);
                    s.enter(
                        #[inline(always)]
                        || {
                            transform_block(s, &p, pad, b, 0, vb);
                            // SAFETY: the block writes only its own tiles
                            unsafe { products(s, &p, vb, &u, b, (0, p.obn), mb, (ptr, epi)) };
                        },
                    )
                })
            });
        } else {
            // few tiles, many channels: every block's tiles transformed once (split over
            // channels), then the products split over channel groups as well
            let per = d.c.div_ceil(4 * rayon::current_num_threads().max(1)).max(1);
            vall.par_chunks_mut(vlen).enumerate().for_each(|(b, vb)| {
                vb.par_chunks_mut(16 * p.nb * L * per).enumerate().for_each(|(k, chunk)| {
                    s.enter(
                        #[inline(always)]
                        || transform_block(s, &p, pad, b, k * per, chunk),
                    )
                })
            });
            (0..p.blocks * p.slices).into_par_iter().for_each(|item| {
                let (b, sl) = (item / p.slices, item % p.slices);
                let (ob_lo, ob_hi) = slice(sl);
                let vb = &vall[b * vlen..(b + 1) * vlen];
                <f32 as crate::cpu::Float>::with_scratch(0, mlen(ob_hi - ob_lo), |_, mb| {
                    s.enter(
                        #[inline(always)]
                        || {
                            // SAFETY: the item writes only its tiles × channels
                            unsafe { products(s, &p, vb, &u, b, (ob_lo, ob_hi), mb, (ptr, epi)) }
                        },
                    )
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
#[inline(always)]
fn transform_block<I: Isa>(s: I, p: &Plan, pad: &[f32], b: usize, c_lo: usize, vb: &mut [f32]) {
    let nbv = p.nb.min(p.vectors - b * p.nb);
    let nbt = p.nb * L;
    match p.lanes {
        Lanes::Flat => {
            let (idx, _) = flat_lanes(p, b, nbv);
            input_flat(s, p, pad, &idx, c_lo, vb, nbt);
        }
        Lanes::Rows { per_row } => input_rows(s, p, pad, b * p.nb, nbv, per_row, c_lo, vb, nbt),
    }
}

/// Block `b`'s products and outputs for the channel groups `ob_lo..ob_hi`, from its
/// transformed tiles `vb` (all channels; see [`transform_block`]).
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
    let mb = aligned(mb, 16 * rows * nbt);
    for xi in 0..16 {
        let vx = &vb[xi * nbt..];
        for ob in ob_lo..ob_hi {
            let ug = u.rows(xi, ob * MR);
            let m0 = (xi * rows + (ob - ob_lo) * MR) * nbt;
            let mx = &mut mb[m0..m0 + MR * nbt];
            let mut v = 0;
            while v + 2 <= nbv {
                s.kernel::<2>(ug, d.c, (&vx[v * L..], 16 * nbt), (&mut mx[v * L..], nbt));
                v += 2;
            }
            if v < nbv {
                s.kernel::<1>(ug, d.c, (&vx[v * L..], 16 * nbt), (&mut mx[v * L..], nbt));
            }
        }
    }
    let o_lo = ob_lo * MR;
    let o_hi = (ob_hi * MR).min(d.o);
    for o in o_lo..o_hi {
        for v in 0..nbv {
            let mut y = output_transform(s, mb, (o - o_lo) * nbt + v * L, rows * nbt);
            if let Some(e) = epi {
                // eval batch norm (+ ReLU) while the outputs are in registers
                let (a, sh) = (s.splat(e.scale[o]), s.splat(e.shift[o]));
                for yv in y.iter_mut() {
                    *yv = s.fmadd(*yv, a, sh);
                    if e.relu {
                        *yv = s.max(*yv, s.zero());
                    }
                }
            }
            // SAFETY: this block alone writes these outputs (the caller's contract)
            unsafe {
                match p.lanes {
                    Lanes::Flat => store_flat(s, p, &y, &org[v * L..(v + 1) * L], o, out),
                    Lanes::Rows { per_row } => {
                        store_rows(s, p, &y, p.row_vector(b * p.nb + v, per_row), o, out)
                    }
                }
            }
        }
    }
}

/// `V = Bᵀ·d·B` of one vector of tiles from their 4×4 windows `dd[r][q]`, stored at
/// `vb[(ξ·C + c)·nbt + at ..]`.
#[inline(always)]
fn transform_store<I: Isa>(s: I, dd: &[[I::V; 4]; 4], vb: &mut [f32], stride: usize, at: usize) {
    assert!(at + 15 * stride + L <= vb.len());
    // Bᵀ·d (down the rows), then ·B (along them)
    let mut t = [[s.zero(); 4]; 4];
    for q in 0..4 {
        t[0][q] = s.sub(dd[0][q], dd[2][q]);
        t[1][q] = s.add(dd[1][q], dd[2][q]);
        t[2][q] = s.sub(dd[2][q], dd[1][q]);
        t[3][q] = s.sub(dd[1][q], dd[3][q]);
    }
    for (r, tr) in t.iter().enumerate() {
        let e =
            [s.sub(tr[0], tr[2]), s.add(tr[1], tr[2]), s.sub(tr[2], tr[1]), s.sub(tr[1], tr[3])];
        for (q, &ev) in e.iter().enumerate() {
            // SAFETY: in bounds (asserted above)
            unsafe { s.store(vb.as_mut_ptr().add((r * 4 + q) * stride + at), ev) };
        }
    }
}

/// Flat mode: the 4×4 windows gathered lane by lane.
#[inline(always)]
fn input_flat<I: Isa>(
    s: I,
    p: &Plan,
    pad: &[f32],
    idx: &[i32],
    c_lo: usize,
    vb: &mut [f32],
    nbt: usize,
) {
    let (plane, wp) = (p.hp * p.wp, p.wp);
    let c_n = vb.len() / (16 * nbt);
    let mut offs: Vec<I::Idx> = Vec::with_capacity(idx.len() / L);
    for ch in idx.chunks_exact(L) {
        offs.push(s.idx(ch.try_into().expect("16 offsets")));
    }
    assert!(offs.len() * L <= nbt && c_lo + c_n <= p.d.c);
    for c in 0..c_n {
        // every gathered offset + c·plane + 3·wp + 3 lies inside `pad` (see `flat_lanes`)
        let base = pad[(c_lo + c) * plane..].as_ptr();
        for (v, &ix) in offs.iter().enumerate() {
            let mut dd = [[s.zero(); 4]; 4];
            for (r, row) in dd.iter_mut().enumerate() {
                for (q, e) in row.iter_mut().enumerate() {
                    // SAFETY: see above
                    *e = unsafe { s.gather(base.add(r * wp + q), ix) };
                }
            }
            transform_store(s, &dd, vb, nbt, c * 16 * nbt + v * L);
        }
    }
}

/// Row mode: the windows of 16 neighbouring tiles from 4 contiguous loads per window row,
/// split into even and odd columns.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn input_rows<I: Isa>(
    s: I,
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
    for v in 0..nbv {
        let (n, ty, tx0) = p.row_vector(v0 + v, per_row);
        for c in 0..c_n {
            let at = (n * p.d.c + c_lo + c) * plane + 2 * ty * wp + 2 * tx0;
            // the last read ends at at + 3·wp + 34 ≤ the padded input + SLACK
            assert!(at + 3 * wp + 2 * L + 2 <= pad.len());
            let mut dd = [[s.zero(); 4]; 4];
            for (r, row) in dd.iter_mut().enumerate() {
                // SAFETY: in bounds (asserted above)
                let (a, b, a2, b2) = unsafe {
                    let src = pad.as_ptr().add(at + r * wp);
                    (s.load(src), s.load(src.add(L)), s.load(src.add(2)), s.load(src.add(L + 2)))
                };
                (row[0], row[1]) = s.deinterleave(a, b);
                (row[2], row[3]) = s.deinterleave(a2, b2);
            }
            transform_store(s, &dd, vb, nbt, c * 16 * nbt + v * L);
        }
    }
}

/// `Aᵀ·m·A` of 16 tiles from `mb[ξ·stride + at ..]`: the 2×2 outputs `[y00, y01, y10, y11]`.
#[inline(always)]
fn output_transform<I: Isa>(s: I, mb: &[f32], at: usize, stride: usize) -> [I::V; 4] {
    assert!(at + 15 * stride + L <= mb.len());
    let mut m = [s.zero(); 16];
    for (xi, v) in m.iter_mut().enumerate() {
        // SAFETY: in bounds (asserted above)
        *v = unsafe { s.load(mb.as_ptr().add(xi * stride + at)) };
    }
    let mut t = [[s.zero(); 4]; 2];
    for q in 0..4 {
        t[0][q] = s.add(s.add(m[q], m[4 + q]), m[8 + q]);
        t[1][q] = s.sub(s.sub(m[4 + q], m[8 + q]), m[12 + q]);
    }
    let mut y = [s.zero(); 4];
    for (i, ti) in t.iter().enumerate() {
        y[2 * i] = s.add(s.add(ti[0], ti[1]), ti[2]);
        y[2 * i + 1] = s.sub(s.sub(ti[1], ti[2]), ti[3]);
    }
    y
}

/// Flat mode: writes 16 tiles' 2×2 outputs of channel `o` lane by lane (pixels past the
/// image's edge dropped).
///
/// # Safety
/// `out` holds the `(n, o, h, w)` output; no other thread writes these tiles.
#[inline(always)]
unsafe fn store_flat<I: Isa>(
    s: I,
    p: &Plan,
    y: &[I::V; 4],
    org: &[Option<(usize, usize, usize)>],
    o: usize,
    out: Out,
) {
    let d = p.d;
    let mut ys = [[0f32; L]; 4];
    for (dst, &v) in ys.iter_mut().zip(y) {
        // SAFETY: 16 floats
        unsafe { s.store(dst.as_mut_ptr(), v) };
    }
    for (lane, og) in org.iter().enumerate() {
        let Some((n, oy, ox)) = *og else { break };
        let base = ((n * d.o + o) * d.h + oy) * d.w + ox;
        let (down, right) = (oy + 1 < d.h, ox + 1 < d.w);
        // SAFETY: (n, o, oy, ox) and its in-image neighbours index the n·o·h·w output;
        // this block alone writes them
        unsafe {
            *out.add(base) = ys[0][lane];
            if right {
                *out.add(base + 1) = ys[1][lane];
            }
            if down {
                *out.add(base + d.w) = ys[2][lane];
                if right {
                    *out.add(base + d.w + 1) = ys[3][lane];
                }
            }
        }
    }
}

/// Row mode: interleaves the outputs of 16 neighbouring tiles into two output rows of up
/// to 32 pixels each (cut at the image's right edge).
///
/// # Safety
/// `out` holds the `(n, o, h, w)` output; no other thread writes these tiles.
#[inline(always)]
unsafe fn store_rows<I: Isa>(
    s: I,
    p: &Plan,
    y: &[I::V; 4],
    (n, ty, tx0): (usize, usize, usize),
    o: usize,
    out: Out,
) {
    let d = p.d;
    let x0 = 2 * tx0;
    let (k_lo, k_hi) = row_counts(d.w, x0);
    for i in 0..2 {
        let oy = 2 * ty + i;
        if oy >= d.h {
            break;
        }
        let (a, b) = s.interleave(y[2 * i], y[2 * i + 1]);
        let base = ((n * d.o + o) * d.h + oy) * d.w + x0;
        // SAFETY: the counts keep the stores inside row oy of channel o of image n; this
        // block alone writes them
        unsafe {
            s.store_first(out.add(base), k_lo, a);
            s.store_first(out.add(base + L), k_hi, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::simd::{Avx2, Avx512};
    use super::*;

    /// The filter transform of a delta filter, and the adjoint's identity, on `s`.
    fn delta_and_adjoint<I: Isa>(s: I) {
        // the centre tap alone: U's middle 2×2 is ±¼, its border 0 (padded rows too)
        let mut g = [0f32; 9];
        g[4] = 1.;
        let mut u = [f32::NAN; 128];
        filters(s, &g, (1, 1), (1, 8), &mut u);
        let expect = [0., 0., 0., 0., 0., 0.25, -0.25, 0., 0., -0.25, 0.25, 0., 0., 0., 0., 0.];
        for (xi, e) in expect.iter().enumerate() {
            assert_eq!(u[xi * 8], *e, "ξ {xi}");
            assert!(u[xi * 8 + 1..xi * 8 + 8].iter().all(|&v| v == 0.), "ξ {xi}: padding");
        }
        // ⟨G·g·Gᵀ, dU⟩ = ⟨g, Gᵀ·dU·G⟩ for any g and dU
        let gs: Vec<f32> = (0..9).map(|k| (k as f32 * 0.7).sin()).collect();
        let du: Vec<f32> = (0..16).map(|k| (k as f32 * 1.3).cos()).collect();
        let mut u = [0f32; 128];
        filters(s, &gs, (1, 1), (1, 8), &mut u);
        let dw = filter_grads(s, &du, 1, 1);
        let lhs: f32 = (0..16).map(|xi| u[xi * 8] * du[xi]).sum();
        let rhs: f32 = gs.iter().zip(&dw).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-5, "{lhs} vs {rhs}");
    }

    #[test]
    fn filter_transform_of_a_delta_filter_and_its_adjoint() {
        if let Some(s) = Avx512::new() {
            delta_and_adjoint(s);
        }
        if let Some(s) = Avx2::new() {
            delta_and_adjoint(s);
        }
    }
}
