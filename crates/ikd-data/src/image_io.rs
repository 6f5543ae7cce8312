//! Reading images and masks from disk, with PIL's colour conversions.
//!
//! Images of any bit depth and channel layout are turned into 8-bit RGB the way PIL's
//! `Image.convert('RGB')` does: grey is replicated into the three channels and an alpha channel is
//! dropped (not composited). 16-bit samples keep their high byte, which is what PIL does when it
//! opens a 16-bit RGB PNG. (PIL opens a 16-bit *grey* PNG as mode `I;16` and its `convert('RGB')`
//! then saturates every value above 255; that destroys the picture, so here 16-bit grey keeps its
//! high byte too.)

use std::path::Path;

use image::{DynamicImage, GrayImage, ImageReader, RgbImage};

use crate::error::{DataError, IoContext, Result};

/// File extensions (lower case) that are read as images.
///
/// ```
/// assert!(ikd_data::IMAGE_EXTENSIONS.contains(&"png"));
/// ```
pub const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "tif", "tiff", "bmp"];

/// Whether a path has one of the [`IMAGE_EXTENSIONS`] (case-insensitive).
///
/// ```
/// use std::path::Path;
/// assert!(ikd_data::is_image_path(Path::new("a/000.PNG")));
/// assert!(!ikd_data::is_image_path(Path::new("a/notes.txt")));
/// ```
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

fn reader(path: &Path) -> Result<ImageReader<std::io::BufReader<std::fs::File>>> {
    ImageReader::open(path).at(path)?.with_guessed_format().at(path)
}

/// Decodes an image file (PNG, JPEG, TIFF or BMP, format guessed from its content).
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
/// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
/// # ikd_data::synthetic::generate(&cfg, dir.path())?;
/// let img = ikd_data::load_image(&dir.path().join("carpet/train/good/000.png"))?;
/// assert_eq!(img.width(), 16);
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn load_image(path: &Path) -> Result<DynamicImage> {
    reader(path)?.decode().map_err(|source| DataError::Decode { path: path.to_path_buf(), source })
}

/// Decodes an image held in memory (an upload, say): PNG, JPEG, TIFF or BMP, the format guessed
/// from the content as [`load_image`] guesses it, so the same bytes give the same pixels. The
/// decoder's default memory limit applies (a header claiming a gigapixel image is an error, not an
/// allocation). The error says what is wrong; the caller names the source.
///
/// ```
/// let mut png = Vec::new();
/// image::RgbImage::new(3, 2)
///     .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
/// assert_eq!(ikd_data::decode_image(&png)?.width(), 3);
/// assert!(ikd_data::decode_image(b"GIF89a...").is_err());
/// # Ok::<(), image::ImageError>(())
/// ```
pub fn decode_image(bytes: &[u8]) -> std::result::Result<DynamicImage, image::ImageError> {
    ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format()?.decode()
}

/// Reads only an image's header and returns its `(width, height)`.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
/// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
/// # ikd_data::synthetic::generate(&cfg, dir.path())?;
/// let (w, h) = ikd_data::image_dimensions(&dir.path().join("carpet/train/good/000.png"))?;
/// assert_eq!((w, h), (16, 16));
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn image_dimensions(path: &Path) -> Result<(u32, u32)> {
    reader(path)?
        .into_dimensions()
        .map_err(|source| DataError::Decode { path: path.to_path_buf(), source })
}

/// Converts any decoded image to 8-bit RGB as PIL's `convert('RGB')` does (see the module docs).
///
/// ```
/// use image::{DynamicImage, GrayImage, Luma};
/// let grey = DynamicImage::ImageLuma8(GrayImage::from_pixel(2, 2, Luma([7])));
/// let rgb = ikd_data::to_rgb_pil(&grey);
/// assert_eq!(rgb.get_pixel(1, 1).0, [7, 7, 7]);
/// ```
pub fn to_rgb_pil(img: &DynamicImage) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let from_fn = |samples: &dyn Fn(u32, u32) -> [u8; 3]| {
        RgbImage::from_fn(w, h, |x, y| image::Rgb(samples(x, y)))
    };
    match img {
        DynamicImage::ImageRgb8(i) => i.clone(),
        DynamicImage::ImageLuma8(i) => from_fn(&|x, y| {
            let v = i.get_pixel(x, y).0[0];
            [v, v, v]
        }),
        DynamicImage::ImageLumaA8(i) => from_fn(&|x, y| {
            let v = i.get_pixel(x, y).0[0];
            [v, v, v]
        }),
        DynamicImage::ImageRgba8(i) => from_fn(&|x, y| {
            let p = i.get_pixel(x, y).0;
            [p[0], p[1], p[2]]
        }),
        DynamicImage::ImageLuma16(i) => from_fn(&|x, y| {
            let v = (i.get_pixel(x, y).0[0] >> 8) as u8;
            [v, v, v]
        }),
        DynamicImage::ImageLumaA16(i) => from_fn(&|x, y| {
            let v = (i.get_pixel(x, y).0[0] >> 8) as u8;
            [v, v, v]
        }),
        DynamicImage::ImageRgb16(i) => from_fn(&|x, y| {
            let p = i.get_pixel(x, y).0;
            [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8]
        }),
        DynamicImage::ImageRgba16(i) => from_fn(&|x, y| {
            let p = i.get_pixel(x, y).0;
            [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8]
        }),
        other => other.to_rgb8(),
    }
}

/// Converts any decoded image to 8-bit grey as PIL's `convert('L')` does (ITU-R 601-2 luma,
/// alpha dropped, 16-bit samples keep their high byte).
///
/// ```
/// use image::{DynamicImage, RgbImage, Rgb};
/// let red = DynamicImage::ImageRgb8(RgbImage::from_pixel(1, 1, Rgb([255, 0, 0])));
/// assert_eq!(ikd_data::to_luma_pil(&red).get_pixel(0, 0).0, [76]);
/// ```
pub fn to_luma_pil(img: &DynamicImage) -> GrayImage {
    let (w, h) = (img.width(), img.height());
    match img {
        DynamicImage::ImageLuma8(i) => i.clone(),
        DynamicImage::ImageLumaA8(i) => {
            GrayImage::from_fn(w, h, |x, y| image::Luma([i.get_pixel(x, y).0[0]]))
        }
        DynamicImage::ImageLuma16(i) => {
            GrayImage::from_fn(w, h, |x, y| image::Luma([(i.get_pixel(x, y).0[0] >> 8) as u8]))
        }
        DynamicImage::ImageLumaA16(i) => {
            GrayImage::from_fn(w, h, |x, y| image::Luma([(i.get_pixel(x, y).0[0] >> 8) as u8]))
        }
        other => {
            let rgb = to_rgb_pil(other);
            GrayImage::from_fn(w, h, |x, y| {
                let [r, g, b] = rgb.get_pixel(x, y).0;
                // PIL's L = R*299/1000 + G*587/1000 + B*114/1000 in 16-bit fixed point.
                let l =
                    (u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000)
                        >> 16;
                image::Luma([l as u8])
            })
        }
    }
}

/// Loads an image file as 8-bit RGB, as PIL's `Image.open(path).convert('RGB')`.
///
/// This is the loader for prediction on arbitrary user images (PNG, JPEG, TIFF, BMP; grey, RGB,
/// RGBA, 8 or 16 bit).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("grey.png");
/// image::GrayImage::from_pixel(4, 3, image::Luma([9])).save(&p).unwrap();
/// let rgb = ikd_data::load_rgb(&p)?;
/// assert_eq!(rgb.get_pixel(0, 0).0, [9, 9, 9]);
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    Ok(to_rgb_pil(&load_image(path)?))
}

/// Loads a ground-truth mask as 8-bit grey, as PIL's `Image.open(path).convert('L')`.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let cfg = ikd_data::SyntheticConfig { categories: vec![ikd_data::synthetic::Texture::Carpet],
/// #     image_size: 16, n_train: 4, n_test_good: 2, n_test_defect: 2, seed: 0 };
/// # ikd_data::synthetic::generate(&cfg, dir.path())?;
/// let mask = ikd_data::load_mask(&dir.path().join("carpet/ground_truth/scratch/000_mask.png"))?;
/// assert!(mask.pixels().any(|p| p.0[0] == 255));
/// # Ok::<(), ikd_data::DataError>(())
/// ```
pub fn load_mask(path: &Path) -> Result<GrayImage> {
    Ok(to_luma_pil(&load_image(path)?))
}
