//! The paper's input pipeline: `Resize((load, load), LANCZOS) → CenterCrop(size) → ToTensor →
//! Normalize(ImageNet)` for images and `Resize((load, load), NEAREST) → CenterCrop(size) → ToTensor
//! → binarise (> 0.5)` for masks, as torchvision does it on PIL images.
//!
//! Resampling uses `fast_image_resize`, whose convolution resamplers reproduce PIL's (antialiased:
//! the filter support grows with the reduction factor); the parity test compares with PIL's output.

use candle_core::{Device, Tensor};
use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::{U8x3, U8};
use fast_image_resize::{FilterType, PixelTrait, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, GrayImage, ImageBuffer, Pixel, RgbImage};

use crate::error::{DataError, Result};
use crate::image_io::to_rgb_pil;

/// ImageNet channel means (RGB) used by `Normalize`.
///
/// ```
/// assert_eq!(ikd_data::IMAGENET_MEAN[0], 0.485);
/// ```
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];

/// ImageNet channel standard deviations (RGB) used by `Normalize`.
///
/// ```
/// assert_eq!(ikd_data::IMAGENET_STD[2], 0.225);
/// ```
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A resampling filter, named as in PIL.
///
/// ```
/// use ikd_data::Filter;
/// let f = Filter::Lanczos3;
/// assert_ne!(f, Filter::Nearest);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Filter {
    /// PIL `NEAREST` (pixel centres).
    Nearest,
    /// PIL `BILINEAR` (antialiased triangle filter).
    Bilinear,
    /// PIL `LANCZOS` / `ANTIALIAS` (antialiased Lanczos, a = 3).
    Lanczos3,
}

impl Filter {
    fn alg(self) -> ResizeAlg {
        match self {
            Filter::Nearest => ResizeAlg::Nearest,
            Filter::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
            Filter::Lanczos3 => ResizeAlg::Convolution(FilterType::Lanczos3),
        }
    }
}

/// Resizes interleaved pixels of type `P`. The typed API instantiates fast_image_resize's
/// convolutions for `P` alone (its `resize` dispatches over every pixel type, which compiled 1.5
/// million lines of LLVM IR into this crate: two minutes of a fresh build).
fn resize_raw<P: PixelTrait>(
    buf: &[u8],
    (w, h): (u32, u32),
    (nw, nh): (u32, u32),
    filter: Filter,
) -> Result<Vec<u8>> {
    if w == 0 || h == 0 || nw == 0 || nh == 0 {
        return Err(DataError::InvalidArgument(format!(
            "cannot resize a {w}×{h} image to {nw}×{nh}"
        )));
    }
    if (w, h) == (nw, nh) {
        return Ok(buf.to_vec());
    }
    let src = TypedImageRef::<P>::from_buffer(w, h, buf)
        .map_err(|e| DataError::InvalidArgument(format!("resize source: {e}")))?;
    let mut out = vec![0u8; nw as usize * nh as usize * P::size()];
    let mut dst = TypedImage::<P>::from_buffer(nw, nh, &mut out)
        .map_err(|e| DataError::InvalidArgument(format!("resize destination: {e}")))?;
    Resizer::new()
        .resize_typed(&src, &mut dst, &ResizeOptions::new().resize_alg(filter.alg()))
        .map_err(|e| DataError::InvalidArgument(format!("resize: {e}")))?;
    Ok(out)
}

/// Resizes an RGB image to `width × height` with a PIL-compatible filter.
///
/// ```
/// use image::RgbImage;
/// let img = RgbImage::new(40, 30);
/// let small = ikd_data::resize_rgb(&img, 8, 8, ikd_data::Filter::Lanczos3)?;
/// assert_eq!(small.dimensions(), (8, 8));
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn resize_rgb(img: &RgbImage, width: u32, height: u32, filter: Filter) -> Result<RgbImage> {
    let out = resize_raw::<U8x3>(img.as_raw(), img.dimensions(), (width, height), filter)?;
    RgbImage::from_raw(width, height, out)
        .ok_or_else(|| DataError::InvalidArgument("resize produced a short buffer".into()))
}

/// Resizes a grey image to `width × height` with a PIL-compatible filter.
///
/// ```
/// use image::GrayImage;
/// let img = GrayImage::new(40, 30);
/// let small = ikd_data::resize_gray(&img, 8, 8, ikd_data::Filter::Nearest)?;
/// assert_eq!(small.dimensions(), (8, 8));
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn resize_gray(img: &GrayImage, width: u32, height: u32, filter: Filter) -> Result<GrayImage> {
    let out = resize_raw::<U8>(img.as_raw(), img.dimensions(), (width, height), filter)?;
    GrayImage::from_raw(width, height, out)
        .ok_or_else(|| DataError::InvalidArgument("resize produced a short buffer".into()))
}

/// Python's `round` (half to even), as torchvision's `CenterCrop` uses it.
fn round_half_even(x: f64) -> i64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && (r as i64) % 2 != 0 {
        (r - x.signum()) as i64
    } else {
        r as i64
    }
}

/// Crops the centred `size × size` window, placed as torchvision's `CenterCrop`
/// (`top = round((h - size) / 2)`). Errors if the image is smaller than `size`.
///
/// ```
/// use image::GrayImage;
/// let img = GrayImage::from_fn(5, 5, |x, y| image::Luma([(y * 5 + x) as u8]));
/// let c = ikd_data::center_crop(&img, 3)?;
/// assert_eq!(c.get_pixel(0, 0).0, [6]);
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn center_crop<P: Pixel + 'static>(
    img: &ImageBuffer<P, Vec<P::Subpixel>>,
    size: u32,
) -> Result<ImageBuffer<P, Vec<P::Subpixel>>> {
    let (w, h) = img.dimensions();
    if size > w || size > h || size == 0 {
        return Err(DataError::InvalidArgument(format!(
            "cannot centre-crop {size}×{size} out of a {w}×{h} image"
        )));
    }
    if (w, h) == (size, size) {
        return Ok(img.clone());
    }
    let top = round_half_even(f64::from(h - size) / 2.0) as u32;
    let left = round_half_even(f64::from(w - size) / 2.0) as u32;
    Ok(image::imageops::crop_imm(img, left, top, size, size).to_image())
}

/// Turns an RGB image into a `(3, H, W)` channel-major `f32` buffer, divided by 255 and
/// normalised with [`IMAGENET_MEAN`] and [`IMAGENET_STD`] (`ToTensor` + `Normalize`).
///
/// ```
/// use image::{RgbImage, Rgb};
/// let img = RgbImage::from_pixel(2, 1, Rgb([255, 0, 0]));
/// let v = ikd_data::normalize_chw(&img);
/// assert_eq!(v.len(), 6);
/// assert!((v[0] - (1.0 - 0.485) / 0.229).abs() < 1e-6);
/// ```
pub fn normalize_chw(img: &RgbImage) -> Vec<f32> {
    let mut out = Vec::new();
    normalize_chw_into(img, &mut out);
    out
}

pub(crate) fn normalize_chw_into(img: &RgbImage, out: &mut Vec<f32>) {
    let hw = (img.width() * img.height()) as usize;
    let start = out.len();
    out.resize(start + 3 * hw, 0.0);
    let dst = &mut out[start..];
    for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            dst[c * hw + i] = (f32::from(px[c]) / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
}

/// The paper's preprocessing: resize to `load_size × load_size`, centre-crop `image_size`,
/// normalise with the ImageNet statistics.
///
/// ```
/// use image::{DynamicImage, RgbImage};
/// use candle_core::Device;
/// let t = ikd_data::Transform::new(32, 24)?;
/// let x = t.apply_image(&DynamicImage::ImageRgb8(RgbImage::new(50, 40)), &Device::Cpu)?;
/// assert_eq!(x.dims(), &[3, 24, 24]);
/// # Ok::<(), ikd_data::DataError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Transform {
    /// Side of the square resize.
    pub load_size: u32,
    /// Side of the centred square crop (at most `load_size`).
    pub image_size: u32,
}

impl Transform {
    /// A transform; errors unless `0 < image_size <= load_size`.
    ///
    /// ```
    /// assert!(ikd_data::Transform::new(256, 224).is_ok());
    /// assert!(ikd_data::Transform::new(128, 256).is_err());
    /// ```
    pub fn new(load_size: u32, image_size: u32) -> Result<Self> {
        if image_size == 0 || image_size > load_size {
            return Err(DataError::Setting {
                name: "image_size",
                value: image_size.to_string(),
                reason: format!(
                    "must be at least 1 and at most load_size ({load_size}): the crop is taken \
                     from the image resized to load_size"
                ),
            });
        }
        Ok(Self { load_size, image_size })
    }

    /// The paper's setting: resize to 256, crop 256.
    ///
    /// ```
    /// let t = ikd_data::Transform::paper();
    /// assert_eq!((t.load_size, t.image_size), (256, 256));
    /// ```
    pub fn paper() -> Self {
        Self { load_size: 256, image_size: 256 }
    }

    /// Resizes (Lanczos) and crops an RGB image; the result is `image_size²` 8-bit RGB.
    ///
    /// ```
    /// use image::RgbImage;
    /// let t = ikd_data::Transform::new(16, 12)?;
    /// assert_eq!(t.prepare_rgb(&RgbImage::new(30, 20))?.dimensions(), (12, 12));
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn prepare_rgb(&self, img: &RgbImage) -> Result<RgbImage> {
        let r = resize_rgb(img, self.load_size, self.load_size, Filter::Lanczos3)?;
        center_crop(&r, self.image_size)
    }

    /// Converts any image to RGB as PIL's `convert('RGB')`, then [`Transform::prepare_rgb`].
    ///
    /// ```
    /// use image::{DynamicImage, GrayImage};
    /// let t = ikd_data::Transform::new(8, 8)?;
    /// let out = t.prepare_image(&DynamicImage::ImageLuma8(GrayImage::new(16, 16)))?;
    /// assert_eq!(out.dimensions(), (8, 8));
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn prepare_image(&self, img: &DynamicImage) -> Result<RgbImage> {
        match img {
            DynamicImage::ImageRgb8(rgb) => self.prepare_rgb(rgb),
            other => self.prepare_rgb(&to_rgb_pil(other)),
        }
    }

    /// Resizes (nearest) and crops a mask, then binarises it: pixels above half of full scale
    /// become 255, the others 0.
    ///
    /// ```
    /// use image::{GrayImage, Luma};
    /// let t = ikd_data::Transform::new(4, 4)?;
    /// let m = t.prepare_mask(&GrayImage::from_pixel(8, 8, Luma([200])))?;
    /// assert!(m.pixels().all(|p| p.0[0] == 255));
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn prepare_mask(&self, mask: &GrayImage) -> Result<GrayImage> {
        let r = resize_gray(mask, self.load_size, self.load_size, Filter::Nearest)?;
        let mut c = center_crop(&r, self.image_size)?;
        for p in c.pixels_mut() {
            p.0[0] = if p.0[0] > 127 { 255 } else { 0 };
        }
        Ok(c)
    }

    /// The full image pipeline: a normalised `(3, image_size, image_size)` `f32` tensor.
    ///
    /// ```
    /// use image::{DynamicImage, RgbImage};
    /// let t = ikd_data::Transform::new(8, 8)?;
    /// let x = t.apply_image(&DynamicImage::ImageRgb8(RgbImage::new(9, 9)), &candle_core::Device::Cpu)?;
    /// assert_eq!(x.dims(), &[3, 8, 8]);
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn apply_image(&self, img: &DynamicImage, device: &Device) -> Result<Tensor> {
        let p = self.prepare_image(img)?;
        let s = self.image_size as usize;
        Ok(Tensor::from_vec(normalize_chw(&p), (3, s, s), device)?)
    }

    /// The full mask pipeline: a `(1, image_size, image_size)` `f32` tensor of 0 and 1.
    ///
    /// ```
    /// use image::GrayImage;
    /// let t = ikd_data::Transform::new(8, 8)?;
    /// let m = t.apply_mask(&GrayImage::new(8, 8), &candle_core::Device::Cpu)?;
    /// assert_eq!(m.dims(), &[1, 8, 8]);
    /// # Ok::<(), ikd_data::DataError>(())
    /// ```
    pub fn apply_mask(&self, mask: &GrayImage, device: &Device) -> Result<Tensor> {
        let p = self.prepare_mask(mask)?;
        let s = self.image_size as usize;
        let v: Vec<f32> = p.as_raw().iter().map(|&b| f32::from(b > 127)).collect();
        Ok(Tensor::from_vec(v, (1, s, s), device)?)
    }
}

impl Default for Transform {
    fn default() -> Self {
        Self::paper()
    }
}
