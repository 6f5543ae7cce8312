//! A bounds-checked safe wrapper of the `gemm` crate's packed matrix product.

#![allow(unsafe_code)]

pub use ::gemm::Parallelism;

use crate::Simd;

/// The scalar types `gemm` multiplies (f32, f64).
pub(crate) trait GemmScalar: Copy + Send + Sync + 'static {
    const ZERO: Self;
    const ONE: Self;

    /// `dst = [dst +] lhs · rhs` by `gemm`'s AVX2 + FMA kernels, what `gemm::gemm` runs on a
    /// CPU without AVX-512; `false` (nothing written) where this CPU lacks them. Strides are in
    /// elements, `dst`'s columns the shorter (as [`matmul`] lays it out).
    ///
    /// # Safety
    /// As `gemm::gemm`: every element addressed lies inside its allocation, `dst` aliases
    /// neither operand.
    unsafe fn gemm_avx2(p: Product<Self>) -> bool;
}

/// One product in `gemm`'s terms: sizes `(m, n, k)`, each matrix as (pointer, column stride, row
/// stride), whether `dst` is added to, the threads.
#[derive(Clone, Copy)]
pub(crate) struct Product<T> {
    dims: (usize, usize, usize),
    dst: (*mut T, isize, isize),
    read_dst: bool,
    lhs: (*const T, isize, isize),
    rhs: (*const T, isize, isize),
    par: Parallelism,
}

impl<T: GemmScalar> Product<T> {
    /// By `gemm::gemm`, the kernels `gemm` chooses (the widest the CPU has).
    ///
    /// # Safety
    /// As [`GemmScalar::gemm_avx2`].
    unsafe fn run(self) {
        let Product { dims: (m, n, k), dst: (d, d_cs, d_rs), read_dst, lhs, rhs, par } = self;
        // SAFETY: the caller's contract
        unsafe {
            ::gemm::gemm(
                m,
                n,
                k,
                d,
                d_cs,
                d_rs,
                read_dst,
                lhs.0,
                lhs.1,
                lhs.2,
                rhs.0,
                rhs.1,
                rhs.2,
                T::ONE,
                T::ONE,
                false,
                false,
                false,
                par,
            )
        }
    }

    /// The same product with a column-major destination where it is row-major, as its
    /// transpose (`gemm::gemm`'s own first step: its micro-kernels want a column-major `dst`).
    fn col_major(self) -> Self {
        let Product { dims: (m, n, k), dst: (d, d_cs, d_rs), lhs, rhs, .. } = self;
        if d_cs.abs() < d_rs.abs() {
            Product {
                dims: (n, m, k),
                dst: (d, d_rs, d_cs),
                lhs: (rhs.0, rhs.2, rhs.1),
                rhs: (lhs.0, lhs.2, lhs.1),
                ..self
            }
        } else {
            self
        }
    }
}

/// [`GemmScalar`] for `$t`, whose AVX2 + FMA micro-kernels (`$lanes` a register) are
/// `$krate::microkernel::fma::$t`: `gemm_basic_generic` with them is what `gemm::gemm` runs
/// once it has chosen that family (`gemm` keeps the choice private; the kernels and the generic
/// driver are public).
macro_rules! gemm_scalar {
    ($t:ident, $krate:ident, $lanes:expr) => {
        impl GemmScalar for $t {
            const ZERO: Self = 0.;
            const ONE: Self = 1.;

            unsafe fn gemm_avx2(p: Product<Self>) -> bool {
                #[cfg(target_arch = "x86_64")]
                if let Some(s) = gemm_common::simd::V3::try_new() {
                    use $krate::microkernel::fma::$t as uk;
                    let Product {
                        dims: (m, n, k),
                        dst: (d, d_cs, d_rs),
                        read_dst,
                        lhs: (l, l_cs, l_rs),
                        rhs: (r, r_cs, r_rs),
                        par,
                    } = p.col_major();
                    // SAFETY: the caller's contract; `s` proves AVX2 + FMA
                    unsafe {
                        gemm_common::gemm::gemm_basic_generic::<
                            _,
                            $t,
                            $lanes,
                            { uk::MR_DIV_N * $lanes },
                            { uk::NR },
                            { uk::MR_DIV_N },
                            { uk::H_M },
                            { uk::H_N },
                        >(
                            s,
                            m,
                            n,
                            k,
                            d,
                            d_cs,
                            d_rs,
                            read_dst,
                            l,
                            l_cs,
                            l_rs,
                            r,
                            r_cs,
                            r_rs,
                            1.,
                            1.,
                            false,
                            false,
                            false,
                            |a, b, c| a * b + c,
                            &uk::UKR,
                            &uk::H_UKR,
                            false,
                            par,
                        )
                    };
                    return true;
                }
                let _ = p;
                false
            }
        }
    };
}

gemm_scalar!(f32, gemm_f32, 8);
gemm_scalar!(f64, gemm_f64, 4);

/// A strided matrix view: `data[row * rs + col * cs]`, `rows × cols`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// Row-major `rows × cols` (row stride `cols`).
    pub fn rows(data: &'a [T], cols: usize) -> Self {
        Self { data, rs: cols, cs: 1 }
    }
    /// The transpose of a row-major `cols × rows` matrix, seen as `rows × cols`.
    pub fn transposed(data: &'a [T], rows: usize) -> Self {
        Self { data, rs: 1, cs: rows }
    }
}

fn fits(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < len
}

/// `dst (m×n, row-major, row stride dst_rs) = [dst +] lhs (m×k) · rhs (k×n)` by `gemm`'s
/// kernels: the widest the CPU has (`gemm`'s own choice), or its AVX2 + FMA ones where `simd` is
/// [`Simd::Avx2Fma`], so that a policy capped at AVX2 runs an AVX2 machine's products too.
/// [`Simd::Scalar`] leaves the choice to `gemm` (see there).
///
/// # Panics
/// When a view does not fit its slice (a bug in the caller).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul<T: GemmScalar>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_rs: usize,
    accumulate: bool,
    lhs: Mat<'_, T>,
    rhs: Mat<'_, T>,
    par: Parallelism,
    simd: Simd,
) {
    assert!(fits(dst.len(), m, n, dst_rs, 1), "gemm: dst {m}x{n} does not fit {}", dst.len());
    assert!(fits(lhs.data.len(), m, k, lhs.rs, lhs.cs), "gemm: lhs {m}x{k} out of bounds");
    assert!(fits(rhs.data.len(), k, n, rhs.rs, rhs.cs), "gemm: rhs {k}x{n} out of bounds");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_rs..r * dst_rs + n].fill(T::ZERO);
            }
        }
        return;
    }
    let p = Product {
        dims: (m, n, k),
        dst: (dst.as_mut_ptr(), 1, dst_rs as isize),
        read_dst: accumulate,
        lhs: (lhs.data.as_ptr(), lhs.cs as isize, lhs.rs as isize),
        rhs: (rhs.data.as_ptr(), rhs.cs as isize, rhs.rs as isize),
        par,
    };
    // SAFETY: every element the product reads or writes lies inside the slices (checked
    // above), `dst` is borrowed mutably and cannot alias `lhs` or `rhs`.
    unsafe {
        if !(simd.min(Simd::detect()) == Simd::Avx2Fma && T::gemm_avx2(p)) {
            p.run()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every vector set the CPU has multiplies, accumulates and transposes alike: within
    /// rounding of a direct f64 sum, on shapes that take `gemm`'s packed, small-`k` and
    /// matrix-vector paths.
    #[test]
    fn every_vector_set_computes_the_product() {
        let mut seed = 7u64;
        let mut rnd = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 40) as f64 / (1u64 << 24) as f64) - 0.5
        };
        for (m, n, k) in [(1, 1, 1), (3, 17, 2), (37, 1, 45), (64, 96, 288), (33, 130, 9)] {
            let a: Vec<f64> = (0..m * k).map(|_| rnd()).collect();
            let b: Vec<f64> = (0..k * n).map(|_| rnd()).collect();
            let c0: Vec<f64> = (0..m * n).map(|_| rnd()).collect();
            let want = |acc: bool| -> Vec<f64> {
                (0..m * n)
                    .map(|i| {
                        let (r, c) = (i / n, i % n);
                        let s: f64 = (0..k).map(|j| a[r * k + j] * b[j * n + c]).sum();
                        if acc {
                            s + c0[i]
                        } else {
                            s
                        }
                    })
                    .collect()
            };
            for simd in Simd::supported() {
                for acc in [false, true] {
                    // f64, row-major operands
                    let mut d = c0.clone();
                    matmul(
                        m,
                        n,
                        k,
                        &mut d,
                        n,
                        acc,
                        Mat::rows(&a, k),
                        Mat::rows(&b, n),
                        Parallelism::None,
                        simd,
                    );
                    for (g, w) in d.iter().zip(want(acc)) {
                        assert!((g - w).abs() < 1e-12, "{simd} f64 {m}x{n}x{k}: {g} vs {w}");
                    }
                    // f32, the lhs given transposed
                    let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m] as f32).collect();
                    let b32: Vec<f32> = b.iter().map(|v| *v as f32).collect();
                    let mut d: Vec<f32> = c0.iter().map(|v| *v as f32).collect();
                    let par = Parallelism::Rayon(2);
                    matmul(
                        m,
                        n,
                        k,
                        &mut d,
                        n,
                        acc,
                        Mat::transposed(&at, m),
                        Mat::rows(&b32, n),
                        par,
                        simd,
                    );
                    for (g, w) in d.iter().zip(want(acc)) {
                        assert!(
                            (*g as f64 - w).abs() < 1e-4 * (1. + k as f64).sqrt(),
                            "{simd} f32 {m}x{n}x{k}"
                        );
                    }
                }
            }
        }
    }
}
