//! A bounds-checked safe wrapper of the `gemm` crate's packed matrix product.

#![allow(unsafe_code)]

pub use ::gemm::Parallelism;

/// The scalar types `gemm` multiplies (f32, f64).
pub(crate) trait GemmScalar: Copy + Send + Sync + 'static {
    const ZERO: Self;
    const ONE: Self;
}

impl GemmScalar for f32 {
    const ZERO: Self = 0.;
    const ONE: Self = 1.;
}

impl GemmScalar for f64 {
    const ZERO: Self = 0.;
    const ONE: Self = 1.;
}

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

/// `dst (m×n, row-major, row stride dst_rs) = [dst +] lhs (m×k) · rhs (k×n)`.
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
    // SAFETY: every element the product reads or writes lies inside the slices (checked
    // above), `dst` is borrowed mutably and cannot alias `lhs` or `rhs`.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            par,
        )
    }
}
