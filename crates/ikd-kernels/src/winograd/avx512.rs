//! The AVX-512 pieces F(2×2, 3×3) and F(4×4, 3×3) share: lane masks, the disjoint-output
//! pointer, the 8×32 micro-kernel of the products, the filter taps' deinterleaving, the
//! padding of the transformed filters and the adjoint filter transform's driver.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use rayon::prelude::*;

/// Output channels per micro-kernel call.
pub(crate) const MR: usize = 8;
/// f32 lanes of a vector: one lane per tile.
pub(crate) const L: usize = 16;

/// The mask of the first `n` lanes (all 16 from `n = 16` on).
pub(crate) fn first_lanes(n: usize) -> __mmask16 {
    if n >= L {
        0xffff
    } else {
        ((1u32 << n) - 1) as u16
    }
}

/// A pointer the blocks write their disjoint outputs through.
#[derive(Clone, Copy)]
pub(crate) struct Out(pub(crate) *mut f32);
// SAFETY: every block writes a disjoint set of output elements (its tiles × its channels)
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The pointer `i` elements on (which a closure captures whole, not its field).
    pub(crate) fn add(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

/// For each tap `k`, where lane `l` of the 16 filters `9l + k` lies among nine loaded
/// registers: an index into each register pair and the lanes the pair supplies.
const fn deinterleave_tables() -> ([[[i32; L]; 5]; 9], [[u16; 5]; 9]) {
    let mut idx = [[[0i32; L]; 5]; 9];
    let mut mask = [[0u16; 5]; 9];
    let mut k = 0;
    while k < 9 {
        let mut l = 0;
        while l < L {
            let f = 9 * l + k;
            let pair = f / 32;
            idx[k][pair][l] = (f - 32 * pair) as i32;
            mask[k][pair] |= 1 << l;
            l += 1;
        }
        k += 1;
    }
    (idx, mask)
}

static DEINTERLEAVE: ([[[i32; L]; 5]; 9], [[u16; 5]; 9]) = deinterleave_tables();

/// Zeroes the padding of every plane of transformed filters (`plane` floats, rows of
/// `c_pad`): the rows from `o` on and, in the first `o` rows, the columns from `c` on.
pub(crate) fn zero_padding(u: &mut [f32], plane: usize, (o, c): (usize, usize), c_pad: usize) {
    u.par_chunks_mut(plane).for_each(|pl| {
        pl[o * c_pad..].fill(0.);
        if c < c_pad {
            for row in pl[..o * c_pad].chunks_mut(c_pad) {
                row[c..].fill(0.);
            }
        }
    });
}

/// The taps of filters `c0 .. c0 + count` (at most 16) of a row of `(c, 3, 3)` filters:
/// `g[k]` lane `l` is tap `k` of filter `c0 + l` (0 past `count`), from nine contiguous
/// loads split by permutes.
#[target_feature(enable = "avx512f")]
pub(crate) fn filter_taps(w_row: &[f32], c0: usize, count: usize) -> [__m512; 9] {
    assert!(count <= L && 9 * (c0 + count) <= w_row.len());
    let (idx, masks) = &DEINTERLEAVE;
    let floats = 9 * count;
    let mut z = [_mm512_setzero_ps(); 9];
    for (j, zj) in z.iter_mut().enumerate() {
        let n = floats.saturating_sub(j * L).min(L);
        let m = first_lanes(n);
        // SAFETY: the mask keeps the load inside the 9·count floats (asserted above)
        *zj = unsafe { _mm512_maskz_loadu_ps(m, w_row.as_ptr().add(9 * c0 + j * L)) };
    }
    let mut g = [_mm512_setzero_ps(); 9];
    for (k, gk) in g.iter_mut().enumerate() {
        // SAFETY: 16 i32 each
        let ix = |pair: usize| unsafe { _mm512_loadu_si512(idx[k][pair].as_ptr().cast()) };
        let mut v = _mm512_permutex2var_ps(z[0], ix(0), z[1]);
        for pair in 1..5 {
            if masks[k][pair] != 0 {
                let t = _mm512_permutex2var_ps(z[2 * pair], ix(pair), z[(2 * pair + 1).min(8)]);
                v = _mm512_mask_blend_ps(masks[k][pair], v, t);
            }
        }
        *gk = v;
    }
    g
}

/// The weight gradient `(n, 3, 3)` from the transformed gradients `du[ξ][filter]`
/// (`P × n`), 16 filters at a time, in parallel: `taps` maps the `P` planes of 16 filters
/// (lane = filter) to their nine taps (`k = 3·row + column`). Shared by F(2×2, 3×3)
/// (`P = 16`) and F(4×4, 3×3) (`P = 36`).
#[target_feature(enable = "avx512f")]
pub(crate) fn filter_grads_by<const P: usize>(
    du: &[f32],
    n: usize,
    taps: impl Fn(&[__m512; P]) -> [__m512; 9] + Sync,
) -> Vec<f32> {
    assert_eq!(du.len(), P * n);
    let mut dw = Vec::with_capacity(9 * n);
    dw.spare_capacity_mut()[..9 * n].par_chunks_mut(9 * 16 * L).enumerate().for_each(
        |(task, out)| {
            // filters 16·16·task .., 16 at a time
            let lo = task * 16 * L;
            for r0 in (lo..lo + out.len() / 9).step_by(L) {
                let count = (n - r0).min(L);
                let mask = first_lanes(count);
                let mut m = [_mm512_setzero_ps(); P];
                for (xi, v) in m.iter_mut().enumerate() {
                    // SAFETY: the unmasked lanes lie inside plane ξ (asserted above)
                    *v = unsafe { _mm512_maskz_loadu_ps(mask, du.as_ptr().add(xi * n + r0)) };
                }
                let mut g = [[0f32; L]; 9];
                for (gk, &val) in g.iter_mut().zip(&taps(&m)) {
                    // SAFETY: 16 floats
                    unsafe { _mm512_storeu_ps(gk.as_mut_ptr(), val) };
                }
                let at = (r0 - lo) * 9;
                for l in 0..count {
                    for (k, gk) in g.iter().enumerate() {
                        out[at + l * 9 + k].write(gk[l]);
                    }
                }
            }
        },
    );
    // SAFETY: the tasks wrote all 9·n elements (each writes every element of its chunk)
    unsafe { dw.set_len(9 * n) };
    dw
}

/// An aligned window of `len` floats inside `buf` (which has `len + 16`).
pub(crate) fn aligned(buf: &mut [f32], len: usize) -> &mut [f32] {
    let skip = buf.as_ptr().align_offset(64).min(L);
    &mut buf[skip..skip + len]
}

/// `m[i·ldm + j·16 + lane] = Σ_{kk<k} u[i·rs + kk·ks] · v[kk·ldv + j·16 + lane]` for 8
/// rows × NR vectors.
#[target_feature(enable = "avx512f")]
pub(crate) fn kernel<const NR: usize>(
    (u, rs, ks): (&[f32], usize, usize),
    k: usize,
    (v, ldv): (&[f32], usize),
    (m, ldm): (&mut [f32], usize),
) {
    assert!(k > 0 && u.len() > (MR - 1) * rs + (k - 1) * ks);
    assert!(v.len() >= (k - 1) * ldv + NR * L);
    assert!(m.len() >= (MR - 1) * ldm + NR * L);
    let mut acc = [[_mm512_setzero_ps(); NR]; MR];
    let (up, vp) = (u.as_ptr(), v.as_ptr());
    for kk in 0..k {
        let mut bv = [_mm512_setzero_ps(); NR];
        for (j, b) in bv.iter_mut().enumerate() {
            // SAFETY: in bounds (asserted above)
            *b = unsafe { _mm512_loadu_ps(vp.add(kk * ldv + j * L)) };
        }
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: in bounds (asserted above)
            let a = _mm512_set1_ps(unsafe { *up.add(i * rs + kk * ks) });
            for (j, s) in row.iter_mut().enumerate() {
                *s = _mm512_fmadd_ps(a, bv[j], *s);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, &s) in row.iter().enumerate() {
            // SAFETY: in bounds (asserted above)
            unsafe { _mm512_storeu_ps(m.as_mut_ptr().add(i * ldm + j * L), s) };
        }
    }
}
