//! The vector operations the Winograd transforms use, for AVX-512F ([`Avx512`]: one
//! `__m512`) and AVX2 + FMA ([`Avx2`]: a pair of `__m256`), so that one source of
//! F(2×2, 3×3) and F(4×4, 3×3) serves both. A vector always holds 16 lanes, one tile each
//! (so the tile layouts, the plans and the buffers are the same on both); AVX2 runs each
//! operation as two 8-wide instructions, and has its own micro-kernel, lane permutes and
//! masks. Also the pieces both algorithms share: the disjoint-output pointer, the padding of
//! the transformed filters and the adjoint filter transform's driver.
//!
//! # How the instruction sets are switched on
//!
//! An [`Isa`] value is a token that exists only where the CPU has its instructions
//! ([`Isa::new`] detects them). Its operations are `#[inline(always)]` functions without
//! `#[target_feature]`; the transforms are generic `#[inline(always)]` functions over the
//! token, and each parallel task runs its part inside [`Isa::enter`], a
//! `#[target_feature]` function into which the task's `#[inline(always)]` closure, the
//! transforms and the operations are all inlined, so they compile to that instruction set.
//! The token's existence is what makes calling the intrinsics sound.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use rayon::prelude::*;

/// Output channels per micro-kernel call.
pub(crate) const MR: usize = 8;
/// f32 lanes of a vector: one lane per tile (both instruction sets).
pub(crate) const L: usize = 16;

/// An instruction set's 16-lane vector operations (see the module's documentation). A value
/// proves the CPU has the instructions.
pub(crate) trait Isa: Copy + Send + Sync + 'static {
    /// 16 f32 lanes.
    type V: Copy;
    /// 16 i32 gather offsets.
    type Idx: Copy + Send + Sync;
    /// The vector set, as a policy names it (the matrix products take the same).
    const SIMD: crate::Simd;
    /// The token, where this CPU has the instructions.
    fn new() -> Option<Self>;
    /// Runs `f` with the instruction set enabled; pass an `#[inline(always)]` closure, so that
    /// its body compiles with it.
    fn enter<R>(self, f: impl FnOnce() -> R) -> R;
    /// All lanes 0.
    fn zero(self) -> Self::V;
    /// All lanes `v`.
    fn splat(self, v: f32) -> Self::V;
    /// `a + b`.
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a − b`.
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a · b`.
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a · b + c`, rounded once.
    fn fmadd(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `c − a · b`, rounded once.
    fn fnmadd(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// The larger of `a` and `b`.
    fn max(self, a: Self::V, b: Self::V) -> Self::V;
    /// The lanes whose bit is set in `live`, 0 in the others.
    fn keep(self, live: u16, v: Self::V) -> Self::V;
    /// 16 floats from `p`.
    ///
    /// # Safety
    /// `p .. p + 16` is readable.
    unsafe fn load(self, p: *const f32) -> Self::V;
    /// 16 floats to `p`.
    ///
    /// # Safety
    /// `p .. p + 16` is writable.
    unsafe fn store(self, p: *mut f32, v: Self::V);
    /// The first `n` floats from `p` (all 16 from `n = 16` on), 0 in the other lanes.
    ///
    /// # Safety
    /// `p .. p + min(n, 16)` is readable.
    unsafe fn load_first(self, p: *const f32, n: usize) -> Self::V;
    /// The first `n` lanes to `p` (all 16 from `n = 16` on).
    ///
    /// # Safety
    /// `p .. p + min(n, 16)` is writable.
    unsafe fn store_first(self, p: *mut f32, n: usize, v: Self::V);
    /// Gather offsets.
    fn idx(self, offsets: &[i32; L]) -> Self::Idx;
    /// Lane `l`: `base[idx[l]]`.
    ///
    /// # Safety
    /// Every `base + idx[l]` is readable.
    unsafe fn gather(self, base: *const f32, idx: Self::Idx) -> Self::V;
    /// The even and the odd elements of the 32 floats `a, b`.
    fn deinterleave(self, a: Self::V, b: Self::V) -> (Self::V, Self::V);
    /// `a₀ b₀ a₁ b₁ …`: its first 16 floats and its last 16.
    fn interleave(self, a: Self::V, b: Self::V) -> (Self::V, Self::V);
    /// F(4×4, 3×3)'s lanes: four quarters of 4 tiles, the tiles of quarter `k` 4 floats
    /// apart from `ptrs[k]`. `q`-th result, lane `4k + l`: `ptrs[k][4l + q]` for `q < 6`
    /// (a row of the tiles' 6×6 windows); lanes of quarters not in `live` 0.
    ///
    /// # Safety
    /// `ptrs[k] .. ptrs[k] + 21` is readable for every `k`.
    unsafe fn quarter_windows(self, ptrs: [*const f32; 4], live: u16) -> [Self::V; 6];
    /// As [`Isa::quarter_windows`] for `q < 4` (a row of the tiles' 4×4 outputs), reading
    /// 16 floats from each `ptrs[k]`.
    ///
    /// # Safety
    /// `ptrs[k] .. ptrs[k] + 16` is readable for every `k`.
    unsafe fn quarter_rows(self, ptrs: [*const f32; 4], live: u16) -> [Self::V; 4];
    /// The inverse of [`Isa::quarter_rows`]: `dst[k][4l + j] = y[j]` lane `4k + l` for the
    /// quarters `k` with a destination.
    ///
    /// # Safety
    /// Each `dst[k] .. dst[k] + 16` is writable.
    unsafe fn store_quarters(self, y: &[Self::V; 4], dst: [Option<*mut f32>; 4]);
    /// The taps of filters `c0 .. c0 + count` (at most 16) of a row of `(c, 3, 3)` filters:
    /// `g[k]` lane `l` is tap `k` of filter `c0 + l` (0 past `count`).
    #[inline(always)]
    fn filter_taps(self, w_row: &[f32], c0: usize, count: usize) -> [Self::V; 9] {
        assert!(count <= L && 9 * (c0 + count) <= w_row.len());
        let mut t = [[0f32; L]; 9];
        for l in 0..count {
            for (k, tk) in t.iter_mut().enumerate() {
                tk[l] = w_row[9 * (c0 + l) + k];
            }
        }
        let mut g = [self.zero(); 9];
        for (gk, tk) in g.iter_mut().zip(&t) {
            // SAFETY: 16 floats
            *gk = unsafe { self.load(tk.as_ptr()) };
        }
        g
    }
    /// `m[i·ldm + j·16 + lane] = Σ_{kk<k} u[i·rs + kk·ks] · v[kk·ldv + j·16 + lane]` for 8
    /// rows × NR vectors.
    fn kernel<const NR: usize>(
        self,
        u: (&[f32], usize, usize),
        k: usize,
        v: (&[f32], usize),
        m: (&mut [f32], usize),
    );
}

/// The bounds every micro-kernel checks.
#[inline(always)]
fn kernel_bounds(
    (u, rs, ks): (&[f32], usize, usize),
    k: usize,
    (v, ldv): (&[f32], usize),
    (m, ldm): (&[f32], usize),
    nr: usize,
) {
    assert!(k > 0 && u.len() > (MR - 1) * rs + (k - 1) * ks);
    assert!(v.len() >= (k - 1) * ldv + nr * L);
    assert!(m.len() >= (MR - 1) * ldm + nr * L);
}

/// AVX-512F: a vector is one `__m512`.
#[derive(Clone, Copy)]
pub(crate) struct Avx512(());

#[target_feature(enable = "avx512f")]
fn enter512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// The mask of the first `n` lanes (all 16 from `n = 16` on).
#[inline(always)]
fn first_lanes(n: usize) -> __mmask16 {
    if n >= L {
        0xffff
    } else {
        ((1u32 << n) - 1) as u16
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

/// Permute indices: lanes `4k + l` of four columns `j` (`take(j)`: element `4l + j` of a
/// quarter's 16 floats into every group of four lanes).
#[inline(always)]
fn take512(j: i32) -> __m512i {
    // SAFETY: AVX-512F (only reached through an `Avx512`)
    unsafe {
        _mm512_setr_epi32(
            j,
            4 + j,
            8 + j,
            12 + j,
            j,
            4 + j,
            8 + j,
            12 + j,
            j,
            4 + j,
            8 + j,
            12 + j,
            j,
            4 + j,
            8 + j,
            12 + j,
        )
    }
}

/// Permute indices: columns 0 and 1 (of `y[0]`, `y[1]`) of quarter `k`'s four tiles in pairs,
/// in lanes 0..8 (tile `4k + l/2`).
#[inline(always)]
fn pair512(k: i32) -> __m512i {
    let b = 4 * k;
    // SAFETY: AVX-512F (only reached through an `Avx512`)
    unsafe {
        _mm512_setr_epi32(
            b,
            b + 16,
            b + 1,
            b + 17,
            b + 2,
            b + 18,
            b + 3,
            b + 19,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        )
    }
}

// SAFETY (every `unsafe` block below without its own comment): an `Avx512` exists only where
// the CPU has AVX-512F (`Avx512::new`), so its intrinsics may run.
impl Isa for Avx512 {
    const SIMD: crate::Simd = crate::Simd::Avx512;
    type V = __m512;
    type Idx = __m512i;
    fn new() -> Option<Self> {
        std::arch::is_x86_feature_detected!("avx512f").then_some(Avx512(()))
    }
    #[inline(always)]
    fn enter<R>(self, f: impl FnOnce() -> R) -> R {
        unsafe { enter512(f) }
    }
    #[inline(always)]
    fn zero(self) -> __m512 {
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    fn splat(self, v: f32) -> __m512 {
        unsafe { _mm512_set1_ps(v) }
    }
    #[inline(always)]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    fn fmadd(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn fnmadd(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        unsafe { _mm512_fnmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn max(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    fn keep(self, live: u16, v: __m512) -> __m512 {
        unsafe { _mm512_maskz_mov_ps(live, v) }
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> __m512 {
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: __m512) {
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn load_first(self, p: *const f32, n: usize) -> __m512 {
        // SAFETY: the mask keeps the load inside the caller's `n` floats
        unsafe { _mm512_maskz_loadu_ps(first_lanes(n), p) }
    }
    #[inline(always)]
    unsafe fn store_first(self, p: *mut f32, n: usize, v: __m512) {
        // SAFETY: the mask keeps the store inside the caller's `n` floats
        unsafe { _mm512_mask_storeu_ps(p, first_lanes(n), v) }
    }
    #[inline(always)]
    fn idx(self, offsets: &[i32; L]) -> __m512i {
        unsafe { _mm512_loadu_si512(offsets.as_ptr().cast()) }
    }
    #[inline(always)]
    unsafe fn gather(self, base: *const f32, idx: __m512i) -> __m512 {
        // SAFETY: every lane's address is readable (the caller's contract)
        unsafe { _mm512_i32gather_ps::<4>(idx, base) }
    }
    #[inline(always)]
    fn deinterleave(self, a: __m512, b: __m512) -> (__m512, __m512) {
        unsafe {
            let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
            (_mm512_permutex2var_ps(a, even, b), _mm512_permutex2var_ps(a, odd, b))
        }
    }
    #[inline(always)]
    fn interleave(self, a: __m512, b: __m512) -> (__m512, __m512) {
        unsafe {
            let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            let hi =
                _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
            (_mm512_permutex2var_ps(a, lo, b), _mm512_permutex2var_ps(a, hi, b))
        }
    }
    #[inline(always)]
    unsafe fn quarter_windows(self, ptrs: [*const f32; 4], live: u16) -> [__m512; 6] {
        // elements 0, 4, 8, 12 of each quarter's load at + q, into lanes 4k..4k + 4
        // (loops and no closures here and in all code inlined into `Isa::enter`: a closure is a
        // function of its own that may stay out of line, without the instruction set)
        unsafe {
            let lo_idx = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0);
            let hi_idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 8, 12, 16, 20, 24, 28);
            let mut out = [_mm512_setzero_ps(); 6];
            for (q, o) in out.iter_mut().enumerate() {
                // SAFETY: ptrs[k] + q + 16 ≤ ptrs[k] + 21 (the caller's contract)
                let (l0, l1) = (_mm512_loadu_ps(ptrs[0].add(q)), _mm512_loadu_ps(ptrs[1].add(q)));
                let (l2, l3) = (_mm512_loadu_ps(ptrs[2].add(q)), _mm512_loadu_ps(ptrs[3].add(q)));
                let lo = _mm512_permutex2var_ps(l0, lo_idx, l1);
                let hi = _mm512_permutex2var_ps(l2, hi_idx, l3);
                *o = _mm512_maskz_mov_ps(live, _mm512_mask_blend_ps(0xff00, lo, hi));
            }
            out
        }
    }
    #[inline(always)]
    unsafe fn quarter_rows(self, ptrs: [*const f32; 4], live: u16) -> [__m512; 4] {
        unsafe {
            let mut y = [_mm512_setzero_ps(); 4];
            for (k, p) in ptrs.iter().enumerate() {
                let lanes: u16 = 0xf << (4 * k);
                if live & lanes == 0 {
                    continue;
                }
                // SAFETY: 16 floats from ptrs[k] (the caller's contract)
                let a = _mm512_loadu_ps(*p);
                for (j, yj) in y.iter_mut().enumerate() {
                    *yj = _mm512_mask_permutexvar_ps(*yj, lanes, take512(j as i32), a);
                }
            }
            y
        }
    }
    #[inline(always)]
    unsafe fn store_quarters(self, y: &[__m512; 4], dst: [Option<*mut f32>; 4]) {
        // columns 0 and 1 (or 2 and 3) of quarter k's tiles in pairs, then the pairs of pairs
        // (lanes 0..8: tile 4k + l/2 of y[0] or y[1])
        unsafe {
            let quad = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
            for (k, d) in dst.iter().enumerate() {
                let Some(d) = *d else { continue };
                let pair = pair512(k as i32);
                let p01 = _mm512_permutex2var_ps(y[0], pair, y[1]);
                let p23 = _mm512_permutex2var_ps(y[2], pair, y[3]);
                // SAFETY: 16 floats at d (the caller's contract)
                _mm512_storeu_ps(d, _mm512_permutex2var_ps(p01, quad, p23));
            }
        }
    }
    #[inline(always)]
    fn filter_taps(self, w_row: &[f32], c0: usize, count: usize) -> [__m512; 9] {
        // nine contiguous loads split by permutes
        assert!(count <= L && 9 * (c0 + count) <= w_row.len());
        let (idx, masks) = &DEINTERLEAVE;
        let floats = 9 * count;
        unsafe {
            let mut z = [_mm512_setzero_ps(); 9];
            for (j, zj) in z.iter_mut().enumerate() {
                let n = floats.saturating_sub(j * L).min(L);
                // SAFETY: the mask keeps the load inside the 9·count floats (asserted above)
                *zj = _mm512_maskz_loadu_ps(first_lanes(n), w_row.as_ptr().add(9 * c0 + j * L));
            }
            let mut g = [_mm512_setzero_ps(); 9];
            for (k, gk) in g.iter_mut().enumerate() {
                let ix0 = _mm512_loadu_si512(idx[k][0].as_ptr().cast());
                let mut v = _mm512_permutex2var_ps(z[0], ix0, z[1]);
                for pair in 1..5 {
                    if masks[k][pair] != 0 {
                        let ix = _mm512_loadu_si512(idx[k][pair].as_ptr().cast());
                        let t = _mm512_permutex2var_ps(z[2 * pair], ix, z[(2 * pair + 1).min(8)]);
                        v = _mm512_mask_blend_ps(masks[k][pair], v, t);
                    }
                }
                *gk = v;
            }
            g
        }
    }
    #[inline(always)]
    fn kernel<const NR: usize>(
        self,
        (u, rs, ks): (&[f32], usize, usize),
        k: usize,
        (v, ldv): (&[f32], usize),
        (m, ldm): (&mut [f32], usize),
    ) {
        kernel_bounds((u, rs, ks), k, (v, ldv), (m, ldm), NR);
        let (up, vp) = (u.as_ptr(), v.as_ptr());
        // SAFETY: every access in bounds (asserted above)
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); NR]; MR];
            for kk in 0..k {
                let mut bv = [_mm512_setzero_ps(); NR];
                for (j, b) in bv.iter_mut().enumerate() {
                    *b = _mm512_loadu_ps(vp.add(kk * ldv + j * L));
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let a = _mm512_set1_ps(*up.add(i * rs + kk * ks));
                    for (j, s) in row.iter_mut().enumerate() {
                        *s = _mm512_fmadd_ps(a, bv[j], *s);
                    }
                }
            }
            for (i, row) in acc.iter().enumerate() {
                for (j, &s) in row.iter().enumerate() {
                    _mm512_storeu_ps(m.as_mut_ptr().add(i * ldm + j * L), s);
                }
            }
        }
    }
}

/// AVX2 with FMA: a vector is two `__m256`, lanes 0..8 and 8..16.
#[derive(Clone, Copy)]
pub(crate) struct Avx2(());

#[target_feature(enable = "avx2,fma")]
fn enter256<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Lane masks of the first `n` lanes of each half.
#[inline(always)]
fn first_masks(n: usize) -> [__m256i; 2] {
    // SAFETY: AVX2 (only reached through an `Avx2`)
    unsafe {
        let ix = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let n = n.min(L) as i32;
        [
            _mm256_cmpgt_epi32(_mm256_set1_epi32(n), ix),
            _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8), ix),
        ]
    }
}

/// The lanes of `v` whose bit is set in `bits` (8 bits), 0 in the others.
#[inline(always)]
#[allow(non_snake_case)]
fn _mm256_and_ps_bits(v: __m256, bits: u16) -> __m256 {
    // SAFETY: AVX2 (only reached through an `Avx2`)
    unsafe {
        let lanes = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        let b = _mm256_set1_epi32(i32::from(bits & 0xff));
        let m = _mm256_cmpeq_epi32(_mm256_and_si256(b, lanes), lanes);
        _mm256_and_ps(v, _mm256_castsi256_ps(m))
    }
}

/// The 64-bit pieces 0, 2, 1, 3 of `v`.
#[inline(always)]
fn order256(v: __m256) -> __m256 {
    // SAFETY: AVX2 (only reached through an `Avx2`)
    unsafe { _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v))) }
}

/// `x₀ y₀ x₁ y₁ …` of two 8-lane vectors: its first 8 floats and its last 8.
#[inline(always)]
fn interleave256(x: __m256, y: __m256) -> [__m256; 2] {
    // SAFETY: AVX (only reached through an `Avx2`)
    unsafe {
        let (lo, hi) = (_mm256_unpacklo_ps(x, y), _mm256_unpackhi_ps(x, y));
        [_mm256_permute2f128_ps::<0x20>(lo, hi), _mm256_permute2f128_ps::<0x31>(lo, hi)]
    }
}

/// Rows `r[m]`: floats `4m .. 4m + 4` of quarters `2h` (low 128 bits) and `2h + 1` (high),
/// `m < 5` (`M = 5`) or `m < 4` (`M = 4`).
///
/// # Safety
/// `ptrs[2h] .. + 4M` and `ptrs[2h + 1] .. + 4M` are readable.
#[inline(always)]
unsafe fn quarter_pair_rows<const M: usize>(ptrs: &[*const f32; 4], h: usize) -> [__m256; M] {
    // SAFETY: AVX (only reached through an `Avx2`); in bounds (the caller's contract)
    unsafe {
        let mut r = [_mm256_setzero_ps(); M];
        for (m, rm) in r.iter_mut().enumerate() {
            *rm = _mm256_loadu2_m128(ptrs[2 * h + 1].add(4 * m), ptrs[2 * h].add(4 * m));
        }
        r
    }
}

/// In each 128-bit half, the 4×4 transpose of the rows `r`.
#[inline(always)]
fn transpose4(r: [__m256; 4]) -> [__m256; 4] {
    // SAFETY: AVX (only reached through an `Avx2`)
    unsafe {
        let t0 = _mm256_castps_pd(_mm256_unpacklo_ps(r[0], r[1]));
        let t1 = _mm256_castps_pd(_mm256_unpacklo_ps(r[2], r[3]));
        let t2 = _mm256_castps_pd(_mm256_unpackhi_ps(r[0], r[1]));
        let t3 = _mm256_castps_pd(_mm256_unpackhi_ps(r[2], r[3]));
        [
            _mm256_castpd_ps(_mm256_unpacklo_pd(t0, t1)),
            _mm256_castpd_ps(_mm256_unpackhi_pd(t0, t1)),
            _mm256_castpd_ps(_mm256_unpacklo_pd(t2, t3)),
            _mm256_castpd_ps(_mm256_unpackhi_pd(t2, t3)),
        ]
    }
}

// SAFETY (every `unsafe` block below without its own comment): an `Avx2` exists only where
// the CPU has AVX2 and FMA (`Avx2::new`), so its intrinsics may run.
impl Isa for Avx2 {
    const SIMD: crate::Simd = crate::Simd::Avx2Fma;
    type V = [__m256; 2];
    type Idx = [__m256i; 2];
    fn new() -> Option<Self> {
        (std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"))
            .then_some(Avx2(()))
    }
    #[inline(always)]
    fn enter<R>(self, f: impl FnOnce() -> R) -> R {
        unsafe { enter256(f) }
    }
    #[inline(always)]
    fn zero(self) -> [__m256; 2] {
        unsafe { [_mm256_setzero_ps(); 2] }
    }
    #[inline(always)]
    fn splat(self, v: f32) -> [__m256; 2] {
        unsafe { [_mm256_set1_ps(v); 2] }
    }
    #[inline(always)]
    fn add(self, a: [__m256; 2], b: [__m256; 2]) -> [__m256; 2] {
        unsafe { [_mm256_add_ps(a[0], b[0]), _mm256_add_ps(a[1], b[1])] }
    }
    #[inline(always)]
    fn sub(self, a: [__m256; 2], b: [__m256; 2]) -> [__m256; 2] {
        unsafe { [_mm256_sub_ps(a[0], b[0]), _mm256_sub_ps(a[1], b[1])] }
    }
    #[inline(always)]
    fn mul(self, a: [__m256; 2], b: [__m256; 2]) -> [__m256; 2] {
        unsafe { [_mm256_mul_ps(a[0], b[0]), _mm256_mul_ps(a[1], b[1])] }
    }
    #[inline(always)]
    fn fmadd(self, a: [__m256; 2], b: [__m256; 2], c: [__m256; 2]) -> [__m256; 2] {
        unsafe { [_mm256_fmadd_ps(a[0], b[0], c[0]), _mm256_fmadd_ps(a[1], b[1], c[1])] }
    }
    #[inline(always)]
    fn fnmadd(self, a: [__m256; 2], b: [__m256; 2], c: [__m256; 2]) -> [__m256; 2] {
        unsafe { [_mm256_fnmadd_ps(a[0], b[0], c[0]), _mm256_fnmadd_ps(a[1], b[1], c[1])] }
    }
    #[inline(always)]
    fn max(self, a: [__m256; 2], b: [__m256; 2]) -> [__m256; 2] {
        unsafe { [_mm256_max_ps(a[0], b[0]), _mm256_max_ps(a[1], b[1])] }
    }
    #[inline(always)]
    fn keep(self, live: u16, v: [__m256; 2]) -> [__m256; 2] {
        if live == 0xffff {
            return v;
        }
        [_mm256_and_ps_bits(v[0], live & 0xff), _mm256_and_ps_bits(v[1], live >> 8)]
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> [__m256; 2] {
        // SAFETY: 16 floats (the caller's contract)
        unsafe { [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))] }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: [__m256; 2]) {
        // SAFETY: 16 floats (the caller's contract)
        unsafe {
            _mm256_storeu_ps(p, v[0]);
            _mm256_storeu_ps(p.add(8), v[1]);
        }
    }
    #[inline(always)]
    unsafe fn load_first(self, p: *const f32, n: usize) -> [__m256; 2] {
        if n >= L {
            // SAFETY: 16 floats (the caller's contract)
            return unsafe { self.load(p) };
        }
        let m = first_masks(n);
        // SAFETY: the masks keep the loads inside the caller's `n` floats (masked-off lanes
        // are not accessed); `p + 8` is only formed, not read, where n ≤ 8
        unsafe { [_mm256_maskload_ps(p, m[0]), _mm256_maskload_ps(p.wrapping_add(8), m[1])] }
    }
    #[inline(always)]
    unsafe fn store_first(self, p: *mut f32, n: usize, v: [__m256; 2]) {
        if n >= L {
            // SAFETY: 16 floats (the caller's contract)
            return unsafe { self.store(p, v) };
        }
        let m = first_masks(n);
        // SAFETY: as in `load_first`
        unsafe {
            _mm256_maskstore_ps(p, m[0], v[0]);
            _mm256_maskstore_ps(p.wrapping_add(8), m[1], v[1]);
        }
    }
    #[inline(always)]
    fn idx(self, offsets: &[i32; L]) -> [__m256i; 2] {
        unsafe {
            [
                _mm256_loadu_si256(offsets.as_ptr().cast()),
                _mm256_loadu_si256(offsets.as_ptr().add(8).cast()),
            ]
        }
    }
    #[inline(always)]
    unsafe fn gather(self, base: *const f32, idx: [__m256i; 2]) -> [__m256; 2] {
        // SAFETY: every lane's address is readable (the caller's contract)
        unsafe { [_mm256_i32gather_ps::<4>(base, idx[0]), _mm256_i32gather_ps::<4>(base, idx[1])] }
    }
    #[inline(always)]
    fn deinterleave(self, a: [__m256; 2], b: [__m256; 2]) -> ([__m256; 2], [__m256; 2]) {
        // within 128-bit halves, then the 64-bit pieces into order
        unsafe {
            let (ea, eb) = (
                _mm256_shuffle_ps::<0b10_00_10_00>(a[0], a[1]),
                _mm256_shuffle_ps::<0b10_00_10_00>(b[0], b[1]),
            );
            let (oa, ob) = (
                _mm256_shuffle_ps::<0b11_01_11_01>(a[0], a[1]),
                _mm256_shuffle_ps::<0b11_01_11_01>(b[0], b[1]),
            );
            ([order256(ea), order256(eb)], [order256(oa), order256(ob)])
        }
    }
    #[inline(always)]
    fn interleave(self, a: [__m256; 2], b: [__m256; 2]) -> ([__m256; 2], [__m256; 2]) {
        (interleave256(a[0], b[0]), interleave256(a[1], b[1]))
    }
    #[inline(always)]
    unsafe fn quarter_windows(self, ptrs: [*const f32; 4], live: u16) -> [[__m256; 2]; 6] {
        // half h: quarters 2h and 2h + 1 in its 128-bit halves; rows r[m] = floats 4m..4m + 4
        // (tile m's first four), so the transpose of r[0..4] gives q = 0..4 and that of
        // r[1..5] q = 4, 5
        let mut out = [self.zero(); 6];
        #[allow(clippy::needless_range_loop)] // h: the half of every output
        for h in 0..2 {
            // SAFETY: floats 0..20 of each quarter (the caller's contract)
            let r = unsafe { quarter_pair_rows::<5>(&ptrs, h) };
            let a = transpose4([r[0], r[1], r[2], r[3]]);
            let b = transpose4([r[1], r[2], r[3], r[4]]);
            for (q, &v) in a.iter().chain(&b[..2]).enumerate() {
                out[q][h] = v;
            }
        }
        for o in out.iter_mut() {
            *o = self.keep(live, *o);
        }
        out
    }
    #[inline(always)]
    unsafe fn quarter_rows(self, ptrs: [*const f32; 4], live: u16) -> [[__m256; 2]; 4] {
        let mut out = [self.zero(); 4];
        #[allow(clippy::needless_range_loop)] // h: the half of every output
        for h in 0..2 {
            // SAFETY: floats 0..16 of each quarter (the caller's contract)
            let t = transpose4(unsafe { quarter_pair_rows::<4>(&ptrs, h) });
            for (j, &v) in t.iter().enumerate() {
                out[j][h] = v;
            }
        }
        for o in out.iter_mut() {
            *o = self.keep(live, *o);
        }
        out
    }
    #[inline(always)]
    unsafe fn store_quarters(self, y: &[[__m256; 2]; 4], dst: [Option<*mut f32>; 4]) {
        for h in 0..2 {
            let (lo, hi) = (dst[2 * h], dst[2 * h + 1]);
            if lo.is_none() && hi.is_none() {
                continue;
            }
            // rows t[l]: tile l's four columns, quarter 2h in the low half, 2h + 1 in the high
            let t = transpose4([y[0][h], y[1][h], y[2][h], y[3][h]]);
            // SAFETY: 16 floats at each destination (the caller's contract)
            unsafe {
                for (l, &tl) in t.iter().enumerate() {
                    if let Some(d) = lo {
                        _mm_storeu_ps(d.add(4 * l), _mm256_castps256_ps128(tl));
                    }
                    if let Some(d) = hi {
                        _mm_storeu_ps(d.add(4 * l), _mm256_extractf128_ps::<1>(tl));
                    }
                }
            }
        }
    }
    #[inline(always)]
    fn kernel<const NR: usize>(
        self,
        (u, rs, ks): (&[f32], usize, usize),
        k: usize,
        (v, ldv): (&[f32], usize),
        (m, ldm): (&mut [f32], usize),
    ) {
        kernel_bounds((u, rs, ks), k, (v, ldv), (m, ldm), NR);
        let (up, vp) = (u.as_ptr(), v.as_ptr());
        // 16 registers: 4 rows × 16 lanes of sums (8), the 16 lanes of v (2) and the
        // broadcast; rows 0..4, then 4..8, for each of the NR vectors
        // SAFETY: every access in bounds (asserted above)
        unsafe {
            for j in 0..NR {
                for i0 in [0, 4] {
                    let mut acc = [[_mm256_setzero_ps(); 2]; 4];
                    for kk in 0..k {
                        let b = vp.add(kk * ldv + j * L);
                        let (b0, b1) = (_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8)));
                        for (i, s) in acc.iter_mut().enumerate() {
                            let a = _mm256_broadcast_ss(&*up.add((i0 + i) * rs + kk * ks));
                            s[0] = _mm256_fmadd_ps(a, b0, s[0]);
                            s[1] = _mm256_fmadd_ps(a, b1, s[1]);
                        }
                    }
                    for (i, s) in acc.iter().enumerate() {
                        let d = m.as_mut_ptr().add((i0 + i) * ldm + j * L);
                        _mm256_storeu_ps(d, s[0]);
                        _mm256_storeu_ps(d.add(8), s[1]);
                    }
                }
            }
        }
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
    #[inline(always)]
    pub(crate) fn add(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

/// Writes the transformed filters `U[ξ][o_pad][c_pad]` (`P` planes, padding zero) of `w (o, c,
/// 3, 3)`, one row of filters per task: `row(w_row, plane, at, out)` writes the `c` filters of
/// `w_row` at `at` of every plane; pass an `#[inline(always)]` closure. Shared by F(2×2, 3×3)
/// (`P = 16`) and F(4×4, 3×3) (`P = 36`).
pub(crate) fn filters_by<I: Isa, const P: usize>(
    s: I,
    w: &[f32],
    (o, c): (usize, usize),
    (o_pad, c_pad): (usize, usize),
    u: &mut [f32],
    row: impl Fn(&[f32], usize, usize, Out) + Sync,
) {
    let plane = o_pad * c_pad;
    assert!(w.len() == 9 * o * c && u.len() == P * plane && o <= o_pad && c <= c_pad);
    zero_padding(u, plane, (o, c), c_pad);
    // each task writes row o of every plane
    let ptr = Out(u.as_mut_ptr());
    (0..o).into_par_iter().for_each(|r| {
        s.enter(
            #[inline(always)]
            || row(&w[r * c * 9..(r + 1) * c * 9], plane, r * c_pad, ptr),
        )
    });
}

/// Zeroes the padding of every plane of transformed filters (`plane` floats, rows of
/// `c_pad`): the rows from `o` on and, in the first `o` rows, the columns from `c` on.
fn zero_padding(u: &mut [f32], plane: usize, (o, c): (usize, usize), c_pad: usize) {
    u.par_chunks_mut(plane).for_each(|pl| {
        pl[o * c_pad..].fill(0.);
        if c < c_pad {
            for row in pl[..o * c_pad].chunks_mut(c_pad) {
                row[c..].fill(0.);
            }
        }
    });
}

/// The weight gradient `(n, 3, 3)` from the transformed gradients `du[ξ][filter]`
/// (`P × n`), 16 filters at a time, in parallel: `taps` maps the `P` planes of 16 filters
/// (lane = filter) to their nine taps (`k = 3·row + column`); pass an `#[inline(always)]`
/// closure. Shared by F(2×2, 3×3) (`P = 16`) and F(4×4, 3×3) (`P = 36`).
pub(crate) fn filter_grads_by<I: Isa, const P: usize>(
    s: I,
    du: &[f32],
    n: usize,
    taps: impl Fn(&[I::V; P]) -> [I::V; 9] + Sync,
) -> Vec<f32> {
    assert_eq!(du.len(), P * n);
    let mut dw = Vec::with_capacity(9 * n);
    dw.spare_capacity_mut()[..9 * n].par_chunks_mut(9 * 16 * L).enumerate().for_each(
        |(task, out)| {
            s.enter(
                #[inline(always)]
                || {
                    // filters 16·16·task .., 16 at a time
                    let lo = task * 16 * L;
                    for r0 in (lo..lo + out.len() / 9).step_by(L) {
                        let count = (n - r0).min(L);
                        let mut m = [s.zero(); P];
                        for (xi, v) in m.iter_mut().enumerate() {
                            // SAFETY: the first `count` lanes lie inside plane ξ (asserted
                            // above)
                            *v = unsafe { s.load_first(du.as_ptr().add(xi * n + r0), count) };
                        }
                        let t = taps(&m);
                        let mut g = [[0f32; L]; 9];
                        for (gk, &v) in g.iter_mut().zip(&t) {
                            // SAFETY: 16 floats
                            unsafe { s.store(gk.as_mut_ptr(), v) };
                        }
                        let at = (r0 - lo) * 9;
                        for l in 0..count {
                            for (k, gk) in g.iter().enumerate() {
                                out[at + l * 9 + k].write(gk[l]);
                            }
                        }
                    }
                },
            )
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
