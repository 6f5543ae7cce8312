//! Pictures a person can read: jet heat maps, overlays, ground-truth contours, side-by-side panels.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::{Error, Result};

/// The jet colour of `x` in [0, 1] (values outside are clamped), as matplotlib's and OpenCV's `jet`.
///
/// ```
/// assert_eq!(ikd::viz::jet(0.0), [0, 0, 128]);
/// assert_eq!(ikd::viz::jet(1.0), [128, 0, 0]);
/// ```
pub fn jet(x: f32) -> [u8; 3] {
    let x = if x.is_finite() { x.clamp(0.0, 1.0) } else { 0.0 };
    let c = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    [c(1.5 - (4.0 * x - 3.0).abs()), c(1.5 - (4.0 * x - 2.0).abs()), c(1.5 - (4.0 * x - 1.0).abs())]
}

/// The map (row-major, `image`'s size) scaled from `[lo, hi]` to [0, 1], coloured with jet and blended
/// over `image` with weight `alpha` for the heat map.
///
/// ```
/// let img = image::RgbImage::new(2, 1);
/// let out = ikd::viz::overlay(&img, &[0.0, 1.0], 0.0, 1.0, 1.0);
/// assert_eq!(out.get_pixel(1, 0).0, ikd::viz::jet(1.0));
/// ```
pub fn overlay(image: &RgbImage, map: &[f32], lo: f32, hi: f32, alpha: f32) -> RgbImage {
    let (w, h) = image.dimensions();
    assert_eq!(map.len(), (w * h) as usize, "map and image sizes differ");
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut out = image.clone();
    for (i, px) in out.pixels_mut().enumerate() {
        let c = jet((map[i] - lo) / span);
        for (dst, src) in px.0.iter_mut().zip(c) {
            *dst = (alpha * src as f32 + (1.0 - alpha) * *dst as f32).round() as u8;
        }
    }
    out
}

/// The heat map overlay of an image's anomaly map (at the image's size): jet colours scaled over
/// `range` (a run's test score range; `None`: the map's own minimum and maximum) blended half
/// opaque over the image in RGB. What `ikd predict` writes and `ikd serve` returns.
///
/// ```
/// let img = image::DynamicImage::new_rgb8(2, 1);
/// let map = ikd::maps::AnomalyMap { width: 2, height: 1, data: vec![0.0, 4.0] };
/// let out = ikd::viz::heatmap(&img, &map, None);
/// assert_eq!(out.get_pixel(1, 0).0, [64, 0, 0]); // half of jet's dark red over black
/// ```
pub fn heatmap(
    image: &image::DynamicImage,
    map: &crate::maps::AnomalyMap,
    range: Option<(f32, f32)>,
) -> RgbImage {
    let (lo, hi) = range
        .unwrap_or_else(|| (map.data.iter().copied().fold(f32::INFINITY, f32::min), map.max()));
    overlay(&ikd_data::to_rgb_pil(image), &map.data, lo, hi, 0.5)
}

/// `image` with the boundary pixels of `mask` (nonzero = defect) drawn in `color`.
///
/// ```
/// let img = image::RgbImage::new(3, 3);
/// let mask = [0, 0, 0, 0, 1, 0, 0, 0, 0];
/// let out = ikd::viz::contour(&img, &mask, [255, 0, 0]);
/// assert_eq!(out.get_pixel(1, 1).0, [255, 0, 0]);
/// assert_eq!(out.get_pixel(0, 0).0, [0, 0, 0]);
/// ```
pub fn contour(image: &RgbImage, mask: &[u8], color: [u8; 3]) -> RgbImage {
    let (w, h) = image.dimensions();
    assert_eq!(mask.len(), (w * h) as usize, "mask and image sizes differ");
    let at = |x: i64, y: i64| -> bool {
        x >= 0 && y >= 0 && x < w as i64 && y < h as i64 && mask[(y * w as i64 + x) as usize] != 0
    };
    let mut out = image.clone();
    for y in 0..h as i64 {
        for x in 0..w as i64 {
            if at(x, y) && !(at(x - 1, y) && at(x + 1, y) && at(x, y - 1) && at(x, y + 1)) {
                out.put_pixel(x as u32, y as u32, Rgb(color));
            }
        }
    }
    out
}

/// Panels of equal height laid side by side with a `gap`-pixel white margin between them.
///
/// ```
/// let a = image::RgbImage::new(4, 2);
/// let out = ikd::viz::side_by_side(&[a.clone(), a], 2);
/// assert_eq!(out.dimensions(), (10, 2));
/// ```
pub fn side_by_side(panels: &[RgbImage], gap: u32) -> RgbImage {
    let h = panels.iter().map(|p| p.height()).max().unwrap_or(0);
    let w =
        panels.iter().map(|p| p.width()).sum::<u32>() + gap * panels.len().saturating_sub(1) as u32;
    let mut out = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let mut x0 = 0;
    for p in panels {
        image::imageops::replace(&mut out, p, x0 as i64, 0);
        x0 += p.width() + gap;
    }
    out
}

/// The picture `ikd test` writes for each test image: the image, its heat map overlay (jet, scores
/// scaled from `[lo, hi]`) and the image with the ground truth's contour (red), side by side.
///
/// ```
/// let img = image::RgbImage::new(4, 4);
/// let p = ikd::viz::panel(&img, &[0.0; 16], &[0; 16], 0.0, 1.0);
/// assert_eq!(p.dimensions(), (4 * 3 + 2 * 4, 4));
/// ```
pub fn panel(image: &RgbImage, map: &[f32], mask: &[u8], lo: f32, hi: f32) -> RgbImage {
    let heat = overlay(image, map, lo, hi, 0.5);
    let truth = contour(image, mask, [255, 0, 0]);
    side_by_side(&[image.clone(), heat, truth], 4)
}

/// Writes `img` as a PNG, atomically.
pub(crate) fn save_png<P>(path: &Path, img: &image::ImageBuffer<P, Vec<P::Subpixel>>) -> Result<()>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
{
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|e| Error::Internal(format!("encoding {}: {e}", path.display())))?;
    Ok(ikd_io::atomic_write(path, bytes.get_ref())?)
}
