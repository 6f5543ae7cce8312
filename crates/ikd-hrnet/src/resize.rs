//! Differentiable bilinear resizing of `(N, C, H, W)` tensors.
//!
//! candle's `upsample_bilinear2d` has no backward pass, so both functions here build the
//! (separable) interpolation as two small dense matrices and apply them with matmuls:
//! `out = A_h · x · A_wᵀ`. Gradients flow to `x` through the matmuls.
//!
//! - [`resize_bilinear_align_corners`]: PyTorch's `interpolate(mode="bilinear",
//!   align_corners=True)`: the corner pixels of input and output coincide. Used for the IKD
//!   features.
//! - [`resize_bilinear_half_pixel`]: PyTorch's `align_corners=False` and OpenCV's
//!   `cv2.resize(INTER_LINEAR)` (pixel centres at half-integers, no antialiasing). Used to bring
//!   anomaly maps back to the image size.

use candle_core::{DType, Device, Result, Tensor};

/// Interpolation matrix `(out, in)` for align_corners=true (PyTorch semantics: the source
/// coordinate of output `i` is `i·(in−1)/(out−1)`, or 0 when `out == 1`).
///
/// ```
/// let m = ikd_hrnet::interpolation_matrix_align_corners(2, 3);
/// assert_eq!(m, vec![1.0, 0.0, 0.5, 0.5, 0.0, 1.0]);
/// ```
pub fn interpolation_matrix_align_corners(in_size: usize, out_size: usize) -> Vec<f64> {
    let scale = if out_size > 1 { (in_size as f64 - 1.) / (out_size as f64 - 1.) } else { 0. };
    build_matrix(in_size, out_size, |i| i as f64 * scale)
}

/// Interpolation matrix `(out, in)` for half-pixel centres (PyTorch align_corners=false, OpenCV
/// `INTER_LINEAR`): the source coordinate of output `i` is `(i+0.5)·in/out − 0.5`, clamped at 0.
///
/// ```
/// let m = ikd_hrnet::interpolation_matrix_half_pixel(2, 4);
/// assert_eq!(m, vec![1.0, 0.0, 0.75, 0.25, 0.25, 0.75, 0.0, 1.0]);
/// ```
pub fn interpolation_matrix_half_pixel(in_size: usize, out_size: usize) -> Vec<f64> {
    let scale = in_size as f64 / out_size as f64;
    build_matrix(in_size, out_size, |i| ((i as f64 + 0.5) * scale - 0.5).max(0.))
}

fn build_matrix(in_size: usize, out_size: usize, src: impl Fn(usize) -> f64) -> Vec<f64> {
    let mut m = vec![0f64; out_size * in_size];
    if in_size == 0 {
        return m;
    }
    for i in 0..out_size {
        let s = src(i).min((in_size - 1) as f64);
        let i0 = (s.floor() as usize).min(in_size - 1);
        let i1 = (i0 + 1).min(in_size - 1);
        let l1 = s - i0 as f64;
        m[i * in_size + i0] += 1. - l1;
        m[i * in_size + i1] += l1;
    }
    m
}

fn matrix_tensor(
    m: Vec<f64>,
    out: usize,
    inp: usize,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    Tensor::from_vec(m, (out, inp), &Device::Cpu)?.to_dtype(dtype)?.to_device(device)
}

/// Applies `out = A_h · x · A_wᵀ` with `ah: (H_out, H)` and `aw: (W_out, W)` matrices (as
/// tensors of `x`'s dtype and device) to an `(N, C, H, W)` tensor. Differentiable in `x`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::ones((1, 1, 2, 2), candle_core::DType::F32, &Device::Cpu)?;
/// let a = Tensor::new(&[[1f32, 0.], [0.5, 0.5], [0., 1.]], &Device::Cpu)?;
/// let y = ikd_hrnet::resize_with_matrices(&x, &a, &a)?;
/// assert_eq!(y.dims(), &[1, 1, 3, 3]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn resize_with_matrices(x: &Tensor, ah: &Tensor, aw: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (ho, h_in) = ah.dims2()?;
    let (wo, w_in) = aw.dims2()?;
    if h_in != h || w_in != w {
        candle_core::bail!(
            "resize matrices ({ho}x{h_in}, {wo}x{w_in}) do not fit an input of {:?}",
            x.shape()
        )
    }
    // Along W: (N·C·H, W) · (W, W_out).
    let y = x.contiguous()?.reshape((n * c * h, w))?.matmul(&aw.t()?)?;
    // Along H: (N·C·W_out, H) · (H, H_out).
    let y = y.reshape((n, c, h, wo))?.transpose(2, 3)?.contiguous()?;
    let y = y.reshape((n * c * wo, h))?.matmul(&ah.t()?)?;
    y.reshape((n, c, wo, ho))?.transpose(2, 3)?.contiguous()
}

/// Bilinear resize of an `(N, C, H, W)` tensor to `(N, C, h, w)` with align_corners=true
/// (PyTorch's `F.interpolate(x, (h, w), mode="bilinear", align_corners=True)`), differentiable.
/// A tensor already of the target size is returned unchanged.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[[[[0f32, 2.], [4., 6.]]]], &Device::Cpu)?;
/// let y = ikd_hrnet::resize_bilinear_align_corners(&x, 3, 3)?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, vec![0., 1., 2., 2., 3., 4., 4., 5., 6.]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn resize_bilinear_align_corners(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (_, _, hi, wi) = x.dims4()?;
    if (hi, wi) == (h, w) {
        return Ok(x.clone());
    }
    let ah =
        matrix_tensor(interpolation_matrix_align_corners(hi, h), h, hi, x.dtype(), x.device())?;
    let aw =
        matrix_tensor(interpolation_matrix_align_corners(wi, w), w, wi, x.dtype(), x.device())?;
    resize_with_matrices(x, &ah, &aw)
}

/// Bilinear resize of an `(N, C, H, W)` tensor to `(N, C, h, w)` with half-pixel centres
/// (PyTorch align_corners=false, OpenCV `INTER_LINEAR`; no antialiasing), differentiable.
/// A tensor already of the target size is returned unchanged.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[[[[0f32, 4.]]]], &Device::Cpu)?;
/// let y = ikd_hrnet::resize_bilinear_half_pixel(&x, 1, 4)?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, vec![0., 1., 3., 4.]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn resize_bilinear_half_pixel(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (_, _, hi, wi) = x.dims4()?;
    if (hi, wi) == (h, w) {
        return Ok(x.clone());
    }
    let ah = matrix_tensor(interpolation_matrix_half_pixel(hi, h), h, hi, x.dtype(), x.device())?;
    let aw = matrix_tensor(interpolation_matrix_half_pixel(wi, w), w, wi, x.dtype(), x.device())?;
    resize_with_matrices(x, &ah, &aw)
}
