//! 2-d convolution (no bias, no groups, no dilation) as im2col + packed matrix products.

use candle_core::{CpuStorage, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu::{slice, tensor, threads, with_cpu, Affine, Float};
use crate::gemm::{matmul, Mat, Parallelism};
use crate::{winograd, KernelPolicy, Simd};

/// The sizes of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    ho: usize,
    wo: usize,
}

impl Geom {
    fn new(x: &[usize], w: &[usize], stride: usize, pad: usize) -> Result<Self> {
        let (&[n, c, h, wd], &[o, ci, kh, kw]) = (x, w) else {
            candle_core::bail!("conv2d: expects (N, C, H, W) and (O, C, kH, kW), got {x:?} {w:?}")
        };
        if c != ci {
            candle_core::bail!("conv2d: input has {c} channels, the weight expects {ci}")
        }
        if stride == 0 || h + 2 * pad < kh || wd + 2 * pad < kw {
            candle_core::bail!(
                "conv2d: a {kh}x{kw} kernel (stride {stride}, padding {pad}) does not fit {h}x{wd}"
            )
        }
        let ho = (h + 2 * pad - kh) / stride + 1;
        let wo = (wd + 2 * pad - kw) / stride + 1;
        Ok(Self { n, c, h, w: wd, o, kh, kw, stride, pad, ho, wo })
    }
    /// Rows of the im2col matrix (`C·kH·kW`).
    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }
    /// Output pixels per image.
    fn p(&self) -> usize {
        self.ho * self.wo
    }
    fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }
    fn out_len(&self) -> usize {
        self.o * self.p()
    }
    /// 1×1, stride 1, no padding: the image itself is the im2col matrix.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }
    /// 3×3, stride 1, padding 1: the shape the Winograd path takes.
    fn winograd_dims(&self) -> Option<winograd::Dims> {
        (self.kh == 3 && self.kw == 3 && self.stride == 1 && self.pad == 1)
            .then_some(winograd::Dims { n: self.n, c: self.c, h: self.h, w: self.w, o: self.o })
    }
    /// For kernel column `j`: the output columns `lo..hi` that read inside the image.
    fn valid_cols(&self, j: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.pad);
        // ix = ox·s + j − p ∈ [0, W)
        let lo = if p > j { (p - j).div_ceil(s) } else { 0 };
        let hi = if self.w + p > j { ((self.w + p - j - 1) / s + 1).min(self.wo) } else { 0 };
        (lo.min(hi), hi)
    }
    /// Input row of output row `oy` and kernel row `i`, if inside the image.
    fn in_row(&self, oy: usize, i: usize) -> Option<usize> {
        let iy = (oy * self.stride + i).checked_sub(self.pad)?;
        (iy < self.h).then_some(iy)
    }
}

/// Stride 1 with the output as wide as the input ("same" padding across): a kernel tap
/// `(i, j)` reads the image shifted by one offset, so a whole im2col row is one block copy
/// plus zeroed borders.
fn shifted(g: &Geom) -> bool {
    g.stride == 1 && g.wo == g.w
}

/// For tap `(i, j)` of a [`shifted`] convolution: the offset `d` (output index `q` reads input
/// index `q + d`), the output rows `oy_lo..oy_hi` inside the image, and the block `q_lo..q_hi`
/// whose sources lie inside the plane.
fn shift_block(g: &Geom, i: usize, j: usize) -> (isize, usize, usize, usize, usize) {
    let w = g.w as isize;
    let d = (i as isize - g.pad as isize) * w + (j as isize - g.pad as isize);
    let oy_lo = g.pad.saturating_sub(i).min(g.ho);
    let oy_hi = (g.h + g.pad).saturating_sub(i).clamp(oy_lo, g.ho);
    let len = (g.h * g.w) as isize;
    let q_lo = ((oy_lo * g.w) as isize).max(-d).min((oy_hi * g.w) as isize) as usize;
    let q_hi = ((oy_hi * g.w) as isize).min(len - d).max(q_lo as isize) as usize;
    (d, oy_lo, oy_hi, q_lo, q_hi)
}

/// `col[(c·kH + i)·kW + j][oy·Wo + ox] = x[c][oy·s + i − p][ox·s + j − p]` (0 outside).
fn im2col<T: Float>(x: &[T], g: &Geom, col: &mut [T]) {
    if shifted(g) {
        return im2col_shifted(x, g, col);
    }
    im2col_rows(x, g, 0..g.ho, col)
}

/// [`im2col`] of the output rows `rows` only: `col` is `C·kH·kW × (rows.len()·Wo)`, its column
/// `(oy − rows.start)·Wo + ox`.
fn im2col_rows<T: Float>(x: &[T], g: &Geom, rows: std::ops::Range<usize>, col: &mut [T]) {
    let p = rows.len() * g.wo;
    for c in 0..g.c {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let r = (c * g.kh + i) * g.kw + j;
                let row = &mut col[r * p..(r + 1) * p];
                let (lo, hi) = g.valid_cols(j);
                for (q, oy) in rows.clone().enumerate() {
                    let dst = &mut row[q * g.wo..(q + 1) * g.wo];
                    let Some(iy) = g.in_row(oy, i) else {
                        dst.fill(T::ZERO);
                        continue;
                    };
                    let src = &plane[iy * g.w..(iy + 1) * g.w];
                    dst[..lo].fill(T::ZERO);
                    dst[hi..].fill(T::ZERO);
                    if lo >= hi {
                        continue;
                    }
                    let start = lo * g.stride + j - g.pad;
                    if g.stride == 1 {
                        dst[lo..hi].copy_from_slice(&src[start..start + hi - lo]);
                    } else {
                        // indexed (not `step_by`), so that stride 2 vectorises as an
                        // interleaved load
                        let (n, s) = (hi - lo, g.stride);
                        let src = &src[start..=start + s * (n - 1)];
                        for (q, d) in dst[lo..hi].iter_mut().enumerate() {
                            *d = src[s * q];
                        }
                    }
                }
            }
        }
    }
}

fn im2col_shifted<T: Float>(x: &[T], g: &Geom, col: &mut [T]) {
    let (p, hw) = (g.p(), g.h * g.w);
    for c in 0..g.c {
        let plane = &x[c * hw..(c + 1) * hw];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let r = (c * g.kh + i) * g.kw + j;
                let row = &mut col[r * p..(r + 1) * p];
                let (d, oy_lo, oy_hi, q_lo, q_hi) = shift_block(g, i, j);
                row[..q_lo].fill(T::ZERO);
                row[q_hi..].fill(T::ZERO);
                if q_hi > q_lo {
                    let s_lo = (q_lo as isize + d) as usize;
                    row[q_lo..q_hi].copy_from_slice(&plane[s_lo..s_lo + (q_hi - q_lo)]);
                }
                let (lo, hi) = g.valid_cols(j);
                if lo > 0 || hi < g.wo {
                    for oy in oy_lo..oy_hi {
                        row[oy * g.wo..oy * g.wo + lo].fill(T::ZERO);
                        row[oy * g.wo + hi..(oy + 1) * g.wo].fill(T::ZERO);
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds every column entry back onto the pixel it was read from.
/// Clobbers the entries of `col` that read outside the image (they are zeroed).
fn col2im<T: Float>(col: &mut [T], g: &Geom, dx: &mut [T]) {
    if shifted(g) {
        return col2im_shifted(col, g, dx);
    }
    col2im_rows(col, g, 0..g.ho, dx)
}

/// [`col2im`] of the output rows `rows` only (`col` as [`im2col_rows`] writes it). Blocks
/// taken from the last rows to the first add onto each pixel in the same order as one call
/// for all rows: a pixel's contributions, ordered by kernel row `i`, come from descending
/// output rows.
fn col2im_rows<T: Float>(col: &[T], g: &Geom, rows: std::ops::Range<usize>, dx: &mut [T]) {
    let p = rows.len() * g.wo;
    for c in 0..g.c {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let r = (c * g.kh + i) * g.kw + j;
                let row = &col[r * p..(r + 1) * p];
                let (lo, hi) = g.valid_cols(j);
                if lo >= hi {
                    continue;
                }
                for (q, oy) in rows.clone().enumerate() {
                    let Some(iy) = g.in_row(oy, i) else { continue };
                    let src = &row[q * g.wo + lo..q * g.wo + hi];
                    let dst = &mut plane[iy * g.w..(iy + 1) * g.w];
                    let start = lo * g.stride + j - g.pad;
                    if g.stride == 1 {
                        for (d, s) in dst[start..start + hi - lo].iter_mut().zip(src) {
                            *d += *s;
                        }
                    } else {
                        let (n, s) = (hi - lo, g.stride);
                        let dst = &mut dst[start..=start + s * (n - 1)];
                        for (q, v) in src.iter().enumerate() {
                            dst[s * q] += *v;
                        }
                    }
                }
            }
        }
    }
}

fn col2im_shifted<T: Float>(col: &mut [T], g: &Geom, dx: &mut [T]) {
    let (p, hw) = (g.p(), g.h * g.w);
    for c in 0..g.c {
        let plane = &mut dx[c * hw..(c + 1) * hw];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let r = (c * g.kh + i) * g.kw + j;
                let row = &mut col[r * p..(r + 1) * p];
                let (d, oy_lo, oy_hi, q_lo, q_hi) = shift_block(g, i, j);
                // entries that read outside the image would wrap onto the neighbouring row
                let (lo, hi) = g.valid_cols(j);
                if lo > 0 || hi < g.wo {
                    for oy in oy_lo..oy_hi {
                        row[oy * g.wo..oy * g.wo + lo].fill(T::ZERO);
                        row[oy * g.wo + hi..(oy + 1) * g.wo].fill(T::ZERO);
                    }
                }
                if q_hi > q_lo {
                    let s_lo = (q_lo as isize + d) as usize;
                    let dst = &mut plane[s_lo..s_lo + (q_hi - q_lo)];
                    for (o, &v) in dst.iter_mut().zip(&row[q_lo..q_hi]) {
                        *o += v;
                    }
                }
            }
        }
    }
}

/// Output rows per im2col block of a strided convolution: about 512 KiB of the matrix, so that
/// it is still in cache when the matrix product reads it, and at least 256 columns, so that
/// the product stays efficient. Stride 2 at HRNet-W32's shapes, forward: 5.2 → 4.6 ms
/// (64 → 64 channels, 128² → 64², batch 2), the same at 64 channels and fewer; the
/// results are bit-identical (each output's sum over `C·kH·kW` is unchanged).
fn col_block_rows(g: &Geom, elem_bytes: usize) -> usize {
    const BYTES: usize = 512 << 10;
    const MIN_COLS: usize = 256;
    let wo = g.wo.max(1);
    (BYTES / (g.k() * wo * elem_bytes).max(1)).max(MIN_COLS.div_ceil(wo)).clamp(1, g.ho.max(1))
}

/// How a batch is split: `(images per task, parallelism inside the matrix products)`.
fn plan(n: usize) -> (usize, Parallelism) {
    let t = threads();
    if t > 1 && n >= 2 {
        (n.div_ceil(t.min(n)), Parallelism::None)
    } else if t > 1 {
        (n.max(1), Parallelism::Rayon(t))
    } else {
        (n.max(1), Parallelism::None)
    }
}

/// The convolution, followed by `epi` (applied to each image's output while it is in cache),
/// on the Winograd path where `policy` and the CPU allow it.
fn forward<T: Float>(
    x: &[T],
    w: &[T],
    g: &Geom,
    epi: Option<&Affine<'_, T>>,
    policy: &KernelPolicy,
) -> Vec<T> {
    if let Some(out) = g.winograd_dims().and_then(|d| T::winograd3x3(x, w, &d, epi, policy)) {
        return out;
    }
    forward_im2col(x, w, g, epi, col_block_rows(g, std::mem::size_of::<T>()), policy.simd)
}

/// [`forward`] by im2col + matrix product; a strided convolution gathers its im2col matrix
/// `rows` output rows at a time.
fn forward_im2col<T: Float>(
    x: &[T],
    w: &[T],
    g: &Geom,
    epi: Option<&Affine<'_, T>>,
    rows: usize,
    simd: Simd,
) -> Vec<T> {
    let (k, p) = (g.k(), g.p());
    let mut out = vec![T::ZERO; g.n * g.out_len()];
    let (per, par) = plan(g.n);
    let rows = if g.pointwise() || shifted(g) { g.ho } else { rows.clamp(1, g.ho.max(1)) };
    let run = |xs: &[T], outs: &mut [T]| {
        let col_len = if g.pointwise() { 0 } else { k * rows * g.wo };
        T::with_scratch(col_len, 0, |col, _| {
            for (xi, oi) in xs.chunks(g.in_len()).zip(outs.chunks_mut(g.out_len())) {
                if g.pointwise() {
                    matmul(g.o, p, k, oi, p, false, Mat::rows(w, k), Mat::rows(xi, p), par, simd);
                } else if shifted(g) {
                    im2col(xi, g, col);
                    matmul(g.o, p, k, oi, p, false, Mat::rows(w, k), Mat::rows(col, p), par, simd);
                } else {
                    for oy in (0..g.ho).step_by(rows) {
                        let r = oy..(oy + rows).min(g.ho);
                        let pb = r.len() * g.wo;
                        im2col_rows(xi, g, r, &mut col[..k * pb]);
                        let dst = &mut oi[oy * g.wo..];
                        matmul(
                            g.o,
                            pb,
                            k,
                            dst,
                            p,
                            false,
                            Mat::rows(w, k),
                            Mat::rows(col, pb),
                            par,
                            simd,
                        );
                    }
                }
                if let Some(e) = epi {
                    e.apply(oi, p);
                }
            }
        })
    };
    if per < g.n {
        x.par_chunks(per * g.in_len())
            .zip(out.par_chunks_mut(per * g.out_len()))
            .for_each(|(xs, outs)| run(xs, outs));
    } else {
        run(x, &mut out);
    }
    out
}

/// Input and weight gradients from the output gradient `dy`, on the Winograd paths where
/// `policy` and the CPU allow them.
fn backward<T: Float>(
    x: &[T],
    w: &[T],
    dy: &[T],
    g: &Geom,
    policy: &KernelPolicy,
) -> (Vec<T>, Vec<T>) {
    backward_by(x, w, dy, g, col_block_rows(g, std::mem::size_of::<T>()), policy)
}

/// [`backward`]; a strided convolution forms and scatters its dcol matrix `rows` output rows at
/// a time.
fn backward_by<T: Float>(
    x: &[T],
    w: &[T],
    dy: &[T],
    g: &Geom,
    rows: usize,
    policy: &KernelPolicy,
) -> (Vec<T>, Vec<T>) {
    let (k, p) = (g.k(), g.p());
    let (per, par) = plan(g.n);
    let simd = policy.simd;
    // A stride-1 convolution with "same" padding: its input gradient is the convolution of
    // dY with the flipped, transposed kernel and the same padding — the forward path, whose
    // matrix product has the long C_out·kH·kW inner dimension, instead of Wᵀ·dY (inner dim
    // C_out only) plus a col2im scatter.
    let same = !g.pointwise()
        && g.stride == 1
        && g.kh == 2 * g.pad + 1
        && g.kw == 2 * g.pad + 1
        && (g.ho, g.wo) == (g.h, g.w);
    // the Winograd path (3×3, stride 1, padding 1), for the whole batch at once
    let (mut dx, dx_done) =
        match g.winograd_dims().and_then(|d| T::winograd3x3_input_grad(dy, w, &d, policy)) {
            Some(v) => (v, true),
            None => (vec![T::ZERO; g.n * g.in_len()], false),
        };
    if dx_done {
        if let Some(dw) =
            g.winograd_dims().and_then(|d| T::winograd3x3_weight_grad(x, dy, &d, policy))
        {
            return (dx, dw);
        }
    }
    let (wf, gt) = if same && !dx_done {
        let mut wf = vec![T::ZERO; w.len()];
        let taps = g.kh * g.kw;
        // written in order (reads stride through w, which the prefetcher follows)
        for c in 0..g.c {
            for o in 0..g.o {
                for t in 0..taps {
                    wf[(c * g.o + o) * taps + (taps - 1 - t)] = w[(o * g.c + c) * taps + t];
                }
            }
        }
        let gt = Geom { c: g.o, o: g.c, ..*g };
        (wf, gt)
    } else {
        (Vec::new(), *g)
    };
    let dw_rows = g.o > k;
    let rows = rows.clamp(1, g.ho.max(1));
    let run = |xs: &[T], dys: &[T], dxs: &mut [T]| -> Vec<T> {
        let mut dw = vec![T::ZERO; g.o * k];
        let col_len = if g.pointwise() { 0 } else { k * p };
        let dcol_len = if g.pointwise() || dx_done {
            0
        } else if same {
            gt.k() * p
        } else {
            k * rows * g.wo
        };
        T::with_scratch(col_len, dcol_len, |col, dcol| {
            let images =
                xs.chunks(g.in_len()).zip(dys.chunks(g.out_len())).zip(dxs.chunks_mut(g.in_len()));
            for (idx, ((xi, dyi), dxi)) in images.enumerate() {
                let cols: &[T] = if g.pointwise() {
                    xi
                } else {
                    im2col(xi, g, col);
                    col
                };
                // `gemm` runs the product 4× faster with the larger of K and O as its rows
                // (measured at K 288, O 32, P 4096; 1.3× at K 64, O 256): dWᵀ (K×O) += col
                // (K×P) · dYᵀ (P×O), or dW (O×K) += dY (O×P) · colᵀ (P×K) when O > K
                let dy_m = Mat::rows(dyi, p);
                if dw_rows {
                    matmul(
                        g.o,
                        k,
                        p,
                        &mut dw,
                        k,
                        idx > 0,
                        Mat::rows(dyi, p),
                        Mat::transposed(cols, p),
                        par,
                        simd,
                    );
                } else {
                    matmul(
                        k,
                        g.o,
                        p,
                        &mut dw,
                        g.o,
                        idx > 0,
                        Mat::rows(cols, p),
                        Mat::transposed(dyi, p),
                        par,
                        simd,
                    );
                }
                let w_t = Mat::transposed(w, k);
                if dx_done {
                    // computed above
                } else if g.pointwise() {
                    // dX (C×P) = Wᵀ (C×O) · dY (O×P)
                    matmul(k, p, g.o, dxi, p, false, w_t, dy_m, par, simd);
                } else if same {
                    // dX (C×P) = W_flipped (C×O·kH·kW) · im2col(dY)
                    im2col(dyi, &gt, dcol);
                    let kt = gt.k();
                    matmul(
                        g.c,
                        p,
                        kt,
                        dxi,
                        p,
                        false,
                        Mat::rows(&wf, kt),
                        Mat::rows(dcol, p),
                        par,
                        simd,
                    );
                } else if shifted(g) {
                    // dcol (K×P) = Wᵀ (K×O) · dY (O×P), scattered back
                    matmul(k, p, g.o, dcol, p, false, w_t, dy_m, par, simd);
                    col2im(dcol, g, dxi);
                } else {
                    // the same by blocks of output rows, the last first (see `col2im_rows`)
                    for oy in (0..g.ho).step_by(rows).rev() {
                        let r = oy..(oy + rows).min(g.ho);
                        let pb = r.len() * g.wo;
                        let dy_b = Mat { data: &dyi[oy * g.wo..], rs: p, cs: 1 };
                        matmul(k, pb, g.o, &mut dcol[..k * pb], pb, false, w_t, dy_b, par, simd);
                        col2im_rows(&dcol[..k * pb], g, r, dxi);
                    }
                }
            }
        });
        dw
    };
    let dw = if per < g.n {
        x.par_chunks(per * g.in_len())
            .zip(dy.par_chunks(per * g.out_len()))
            .zip(dx.par_chunks_mut(per * g.in_len()))
            .map(|((xs, dys), dxs)| run(xs, dys, dxs))
            .reduce_with(|mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += *b);
                a
            })
            .unwrap_or_else(|| vec![T::ZERO; g.o * k])
    } else {
        run(x, dy, &mut dx)
    };
    if dw_rows {
        (dx, dw)
    } else {
        (dx, transpose(&dw, k, g.o))
    }
}

/// The transpose (`cols × rows`) of a row-major `rows × cols` matrix, in 32×32 tiles so that
/// neither side strides through memory a row at a time.
fn transpose<T: Float>(a: &[T], rows: usize, cols: usize) -> Vec<T> {
    const B: usize = 32;
    let mut t = vec![T::ZERO; a.len()];
    for r0 in (0..rows).step_by(B) {
        for c0 in (0..cols).step_by(B) {
            for r in r0..(r0 + B).min(rows) {
                for c in c0..(c0 + B).min(cols) {
                    t[c * rows + r] = a[r * cols + c];
                }
            }
        }
    }
    t
}

/// The convolution as a candle op: arguments `(x, weight)`. The policy goes with it, so that
/// the backward pass takes the same paths as the forward pass.
#[derive(Debug, Clone, Copy)]
struct Conv2dOp {
    stride: usize,
    pad: usize,
    policy: KernelPolicy,
}

impl Conv2dOp {
    fn fwd<T: Float>(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(l1.dims(), l2.dims(), self.stride, self.pad)?;
        let (x, w) = (slice::<T>(s1, l1, "conv2d")?, slice::<T>(s2, l2, "conv2d")?);
        let out = forward(x, w, &g, None, &self.policy);
        Ok((T::to_cpu_storage_owned(out), Shape::from((g.n, g.o, g.ho, g.wo))))
    }

    fn bwd_typed<T: Float>(&self, x: &Tensor, w: &Tensor, dy: &Tensor) -> Result<(Tensor, Tensor)> {
        let g = Geom::new(x.dims(), w.dims(), self.stride, self.pad)?;
        let (dx, dw) = with_cpu::<T, _>(x, |xs| {
            with_cpu::<T, _>(w, |ws| {
                with_cpu::<T, _>(dy, |dys| Ok(backward(xs, ws, dys, &g, &self.policy)))
            })
        })?;
        Ok((tensor(dx, x.shape().clone()), tensor(dw, w.shape().clone())))
    }
}

impl candle_core::CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "ikd-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        match s1 {
            CpuStorage::F32(_) => self.fwd::<f32>(s1, l1, s2, l2),
            CpuStorage::F64(_) => self.fwd::<f64>(s1, l1, s2, l2),
            _ => Err(crate::cpu::unsupported_dtype("ikd-conv2d", s1)),
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = match x.dtype() {
            candle_core::DType::F32 => self.bwd_typed::<f32>(x, w, dy)?,
            _ => self.bwd_typed::<f64>(x, w, dy)?,
        };
        Ok((Some(dx), Some(dw)))
    }
}

/// A 2-d convolution of `x (N, C, H, W)` with `weight (O, C, kH, kW)`, no bias, with `stride`
/// and zero `padding` on every side; differentiable. The CPU kernel where `policy`
/// [applies](KernelPolicy::applies) (Winograd or im2col + packed matrix products), candle's
/// ops otherwise: a 1×1 stride-1 convolution without padding as a batched matrix product
/// (whose backward pass is two more, where candle's `conv2d` backward runs a direct
/// `conv_transpose2d` loop), every other one as candle's `conv2d`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use ikd_kernels::KernelPolicy;
/// let x = Tensor::randn(0f32, 1., (2, 3, 9, 9), &Device::Cpu)?;
/// let w = Tensor::randn(0f32, 1., (4, 3, 3, 3), &Device::Cpu)?;
/// let y = ikd_kernels::conv2d(&x, &w, 2, 1, &KernelPolicy::default())?;
/// let reference = ikd_kernels::conv2d(&x, &w, 2, 1, &KernelPolicy::candle())?;
/// assert_eq!(y.dims(), &[2, 4, 5, 5]);
/// assert!((y - reference)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-4);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
    policy: &KernelPolicy,
) -> Result<Tensor> {
    if !policy.applies(&[x, weight]) {
        return candle_conv2d(x, weight, stride, padding);
    }
    let x = x.contiguous()?;
    let weight = weight.contiguous()?;
    x.apply_op2(&weight, Conv2dOp { stride, pad: padding, policy: *policy })
}

/// [`conv2d`] with candle's ops.
fn candle_conv2d(x: &Tensor, weight: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    let (c_out, c_in, kh, kw) = weight.dims4()?;
    if (kh, kw, stride, padding) != (1, 1, 1, 0) {
        return x.conv2d(weight, padding, stride, 1, 1);
    }
    // `W · X` per image, `(C_out, C_in) · (C_in, H·W)`
    let (n, c, h, w) = x.dims4()?;
    if c != c_in {
        candle_core::bail!("1x1 conv expects (N, {c_in}, H, W), got {:?}", x.shape())
    }
    let wm = weight.reshape((c_out, c_in))?.broadcast_left(n)?;
    wm.matmul(&x.reshape((n, c, h * w))?)?.reshape((n, c_out, h, w))
}

/// The convolution followed by a per-channel affine map (+ ReLU) as one candle op: arguments
/// `(x, weight, scale_shift (2, O))`.
#[derive(Debug, Clone, Copy)]
struct Conv2dAffineOp {
    stride: usize,
    pad: usize,
    relu: bool,
    policy: KernelPolicy,
}

impl Conv2dAffineOp {
    fn fwd<T: Float>(
        &self,
        (s1, l1): (&CpuStorage, &Layout),
        (s2, l2): (&CpuStorage, &Layout),
        (s3, l3): (&CpuStorage, &Layout),
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(l1.dims(), l2.dims(), self.stride, self.pad)?;
        let ss = slice::<T>(s3, l3, "conv2d_affine")?;
        if l3.dims() != [2, g.o] {
            candle_core::bail!(
                "conv2d_affine: scale and shift for {} channels, got {:?}",
                g.o,
                l3.dims()
            )
        }
        let epi = Affine { scale: &ss[..g.o], shift: &ss[g.o..], relu: self.relu };
        let x = slice::<T>(s1, l1, "conv2d_affine")?;
        let out = forward(x, slice::<T>(s2, l2, "conv2d_affine")?, &g, Some(&epi), &self.policy);
        Ok((T::to_cpu_storage_owned(out), Shape::from((g.n, g.o, g.ho, g.wo))))
    }

    /// Gradients from the recomputed convolution `c`: the channel affine map's backward pass on
    /// `c` (`batch_norm::affine_backward`), then the convolution's own of `dc`.
    fn bwd_typed<T: Float>(
        &self,
        (x, w, ss): (&Tensor, &Tensor, &Tensor),
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let g = Geom::new(x.dims(), w.dims(), self.stride, self.pad)?;
        let p = g.p();
        let (dx, dw, dss) = with_cpu::<T, _>(x, |xs| {
            with_cpu::<T, _>(w, |ws| {
                with_cpu::<T, _>(ss, |sss| {
                    with_cpu::<T, _>(y, |ys| {
                        with_cpu::<T, _>(dy, |dys| {
                            let c = forward(xs, ws, &g, None, &self.policy);
                            let relu_y = if self.relu { Some(ys) } else { None };
                            let (dc, mut dss, d_shift) = crate::batch_norm::affine_backward(
                                &c,
                                (g.n, g.o, p),
                                &sss[..g.o],
                                dys,
                                relu_y,
                            );
                            dss.extend(d_shift);
                            let (dx, dw) = backward(xs, ws, &dc, &g, &self.policy);
                            Ok((dx, dw, dss))
                        })
                    })
                })
            })
        })?;
        Ok((
            tensor(dx, x.shape().clone()),
            tensor(dw, w.shape().clone()),
            tensor(dss, ss.shape().clone()),
        ))
    }
}

impl candle_core::CustomOp3 for Conv2dAffineOp {
    fn name(&self) -> &'static str {
        "ikd-conv2d-affine"
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
            CpuStorage::F32(_) => self.fwd::<f32>((s1, l1), (s2, l2), (s3, l3)),
            CpuStorage::F64(_) => self.fwd::<f64>((s1, l1), (s2, l2), (s3, l3)),
            _ => Err(crate::cpu::unsupported_dtype("ikd-conv2d-affine", s1)),
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        ss: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, dss) = match x.dtype() {
            candle_core::DType::F32 => self.bwd_typed::<f32>((x, w, ss), res, dy)?,
            _ => self.bwd_typed::<f64>((x, w, ss), res, dy)?,
        };
        Ok((Some(dx), Some(dw), Some(dss)))
    }
}

/// [`conv2d`] followed by `y·scale + shift` per output channel and an optional ReLU (an
/// eval-mode batch norm), the map applied to each image's output while it is in cache (inside
/// the Winograd path's output transform). One CPU kernel where `policy`
/// [applies](KernelPolicy::applies), [`conv2d`] then [`crate::channel_affine`] otherwise;
/// differentiable either way.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use ikd_kernels::KernelPolicy;
/// let x = Tensor::randn(0f32, 1., (2, 3, 9, 9), &Device::Cpu)?;
/// let w = Tensor::randn(0f32, 1., (4, 3, 3, 3), &Device::Cpu)?;
/// let scale = Tensor::new(&[1f32, 2., 0.5, -1.], &Device::Cpu)?;
/// let shift = Tensor::new(&[0f32, 1., -1., 0.], &Device::Cpu)?;
/// let p = KernelPolicy::default();
/// let y = ikd_kernels::conv2d_affine(&x, &w, 1, 1, (&scale, &shift), true, &p)?;
/// let c = ikd_kernels::conv2d(&x, &w, 1, 1, &p)?;
/// let reference = ikd_kernels::channel_affine(&c, &scale, &shift, true, &p)?;
/// assert!((y - reference)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-4);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn conv2d_affine(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
    (scale, shift): (&Tensor, &Tensor),
    relu: bool,
    policy: &KernelPolicy,
) -> Result<Tensor> {
    if !policy.applies(&[x, weight, scale, shift]) {
        let y = conv2d(x, weight, stride, padding, policy)?;
        return crate::channel_affine(&y, scale, shift, relu, policy);
    }
    let ss = Tensor::stack(&[scale, shift], 0)?.contiguous()?;
    let op = Conv2dAffineOp { stride, pad: padding, relu, policy: *policy };
    x.contiguous()?.apply_op3(&weight.contiguous()?, &ss, op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_of_a_non_square_matrix() {
        let a: Vec<f64> = (0..70 * 33).map(f64::from).collect();
        let t = transpose(&a, 70, 33);
        for r in 0..70 {
            for c in 0..33 {
                assert_eq!(t[c * 70 + r], a[r * 33 + c]);
            }
        }
    }

    #[test]
    fn strided_convolutions_by_row_blocks_are_bit_identical() {
        // 3×3 stride 2 (odd and even sizes), 1×3 stride 2 padding 0, 3×3 stride 3
        for (n, c, h, wd, o, kh, kw, s, p) in [
            (2, 5, 11, 11, 4, 3, 3, 2, 1),
            (1, 3, 16, 16, 6, 3, 3, 2, 1),
            (2, 2, 9, 13, 3, 1, 3, 2, 0),
            (1, 4, 14, 10, 2, 3, 3, 3, 1),
        ] {
            let g = Geom::new(&[n, c, h, wd], &[o, c, kh, kw], s, p).unwrap();
            let val = |i: usize, f: f64| ((i as f64 * f).sin() * 3.) as f32;
            let x: Vec<f32> = (0..n * g.in_len()).map(|i| val(i, 0.37)).collect();
            let w: Vec<f32> = (0..o * g.k()).map(|i| val(i, 0.71)).collect();
            let dy: Vec<f32> = (0..n * g.out_len()).map(|i| val(i, 1.13)).collect();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            for simd in Simd::supported() {
                let policy = KernelPolicy { simd, ..Default::default() };
                let whole = bits(&forward_im2col(&x, &w, &g, None, g.ho, simd));
                let (dx_whole, dw_whole) = backward_by(&x, &w, &dy, &g, g.ho, &policy);
                for rows in 1..g.ho {
                    let by_rows = bits(&forward_im2col(&x, &w, &g, None, rows, simd));
                    assert_eq!(by_rows, whole, "{simd} {g:?} {rows}");
                    let (dx, dw) = backward_by(&x, &w, &dy, &g, rows, &policy);
                    assert_eq!(
                        bits(&dx),
                        bits(&dx_whole),
                        "{simd} {g:?} by {rows}: input gradient"
                    );
                    assert_eq!(
                        bits(&dw),
                        bits(&dw_whole),
                        "{simd} {g:?} by {rows}: weight gradient"
                    );
                }
            }
        }
    }

    #[test]
    fn valid_columns_cover_exactly_the_image() {
        for (w, k, s, p) in [(5, 3, 1, 1), (6, 3, 2, 1), (7, 3, 2, 1), (4, 1, 1, 0), (5, 1, 2, 0)] {
            let g = Geom::new(&[1, 1, 1, w], &[1, 1, 1, k], s, p).unwrap();
            for j in 0..k {
                let (lo, hi) = g.valid_cols(j);
                for ox in 0..g.wo {
                    let ix = (ox * s + j) as isize - p as isize;
                    let inside = ix >= 0 && (ix as usize) < w;
                    assert_eq!(inside, (lo..hi).contains(&ox), "w {w} k {k} s {s} p {p} j {j}");
                }
            }
        }
    }
}
