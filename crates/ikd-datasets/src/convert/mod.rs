//! Conversions of benchmark archives to MVTec AD layout, run by
//! [`fetch_dataset`](crate::fetch_dataset) on a freshly extracted archive (the source
//! folder is consumed: files are moved, not copied).
//!
//! | dataset | source layout | result |
//! | --- | --- | --- |
//! | VisA | `split_csv/1cls.csv` (`object,split,label,image,mask`) | `<object>/train/good`, `test/{good,bad}`, `ground_truth/bad/<stem>_mask.png` (non-zero → 255) |
//! | BTAD | `<NN>/train/ok`, `test/{ok,ko}`, `ground_truth/ko/<stem>.png`, BMP images | the same folders, every BMP as PNG (`ok` is read as the defect-free class) |
//! | KolektorSDD | `kosNN/PartN.jpg` + `PartN_label.bmp` | `kolektor/train/good`, `test/{good,defect}`, masks binarised; defect-free images split 80/20 with seed [`KOLEKTOR_SEED`], written to `kolektor/split.csv` |
//! | MVTec LOCO AD | `ground_truth/<defect>/<stem>/NNN.png` | the union of each image's masks as `ground_truth/<defect>/<stem>_mask.png` |
//! | MVTec AD 2 | `test_public/{good,bad}`, `test_public/ground_truth/bad` | `test/{good,bad}`, `ground_truth/bad`; `test_private*` dropped (no ground truth) |

use std::fs;
use std::path::{Path, PathBuf};

use image::GrayImage;

use crate::error::{DatasetError, IoContext, Result};
use crate::manifest::{Conversion, Manifest};

mod ad2;
mod btad;
mod kolektor;
mod loco;
mod visa;

pub use kolektor::{KOLEKTOR_SEED, KOLEKTOR_TEST_SHARE};

/// What marks the dataset folder inside an extracted archive of this conversion.
pub(crate) fn probe(conversion: Conversion, manifest: &Manifest) -> String {
    match conversion {
        Conversion::Visa => "split_csv/1cls.csv".into(),
        Conversion::Kolektor => "kos01".into(),
        _ => manifest.categories.first().map(|c| c.name.clone()).unwrap_or_default(),
    }
}

/// Converts the extracted dataset at `source` into MVTec AD layout in `out` (an empty staging
/// folder). `source` is consumed.
///
/// ```no_run
/// use ikd_datasets::{Conversion, Manifest};
/// let m = Manifest::load("datasets/btad.json")?;
/// ikd_datasets::convert::convert(Conversion::Btad, "extracted/BTech_Dataset_transformed".as_ref(),
///     "data/btad".as_ref(), &m, true)?;
/// # Ok::<(), ikd_datasets::DatasetError>(())
/// ```
pub fn convert(
    conversion: Conversion,
    source: &Path,
    out: &Path,
    manifest: &Manifest,
    progress: bool,
) -> Result<()> {
    fs::create_dir_all(out).at(out)?;
    let pb = ikd_io::progress::bar(manifest.categories.len() as u64, "convert", progress);
    match conversion {
        Conversion::Visa => visa::visa(source, out)?,
        Conversion::Kolektor => {
            let name = manifest.categories.first().map_or("kolektor", |c| c.name.as_str());
            kolektor::kolektor(source, &out.join(name))?
        }
        Conversion::Btad | Conversion::Loco | Conversion::MvtecAd2 => {
            for c in &manifest.categories {
                let (from, to) = (source.join(&c.name), out.join(&c.name));
                if !from.is_dir() {
                    let name = c.name.clone();
                    return Err(ikd_data::DataError::MissingCategory { name, path: from }.into());
                }
                match conversion {
                    Conversion::Btad => btad::btad(&from, &to)?,
                    Conversion::Loco => loco::loco(&from, &to)?,
                    _ => ad2::ad2(&from, &to)?,
                }
                pb.inc(1);
            }
        }
    }
    pb.finish_and_clear();
    Ok(())
}

fn layout_err(path: &Path, message: impl Into<String>) -> DatasetError {
    DatasetError::Layout { path: path.to_path_buf(), message: message.into() }
}

/// Moves a file, creating the destination's folder.
fn move_file(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).at(parent)?;
    }
    if to.exists() {
        return Err(layout_err(
            to,
            format!("two source files map here (the second: {})", from.display()),
        ));
    }
    fs::rename(from, to).at(to)
}

/// Moves the images of `from` (if it exists) into `to`; BMP images become PNG when `bmp_to_png`.
fn move_images(from: &Path, to: &Path, bmp_to_png: bool) -> Result<usize> {
    if !from.is_dir() {
        return Ok(0);
    }
    let images = list_images(from)?;
    fs::create_dir_all(to).at(to)?;
    for p in &images {
        let is_bmp = p.extension().is_some_and(|e| e.eq_ignore_ascii_case("bmp"));
        if bmp_to_png && is_bmp {
            let img = ikd_data::load_image(p)?;
            let dst = to.join(format!("{}.png", file_stem(p)));
            save_png(&img, &dst)?;
        } else {
            move_file(p, &to.join(p.file_name().unwrap_or_default()))?;
        }
    }
    Ok(images.len())
}

fn save_png(img: &image::DynamicImage, path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).at(parent)?;
    }
    img.save_with_format(path, image::ImageFormat::Png).map_err(|source| match source {
        image::ImageError::IoError(source) => DatasetError::Io { path: path.to_path_buf(), source },
        source => DatasetError::ImageWrite { path: path.to_path_buf(), source },
    })
}

/// A mask as 0/255: every non-zero pixel (of any channel) becomes 255.
fn binarised(path: &Path) -> Result<GrayImage> {
    let m = ikd_data::load_mask(path)?;
    Ok(GrayImage::from_fn(m.width(), m.height(), |x, y| {
        image::Luma([if m.get_pixel(x, y).0[0] != 0 { 255 } else { 0 }])
    }))
}

/// The non-hidden entries of a folder, sorted.
fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// The image files of a folder, sorted; any other (non-hidden) entry is an error.
fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = list_dir(dir)?;
    if let Some(p) = entries.iter().find(|p| !p.is_file() || !ikd_data::is_image_path(p)) {
        return Err(ikd_data::DataError::NotAnImage { path: p.clone() }.into());
    }
    Ok(entries)
}

/// A file's name without its extension.
fn file_stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A folder's (or file's) name.
fn dir_name(p: &Path) -> String {
    p.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A converted image that cannot be written is a write error naming the file, never
    /// "cannot read image".
    #[test]
    fn a_failed_png_write_is_a_write_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gt").join("000_mask.png");
        // PNG has no 32-bit float pixels: the encoder refuses.
        let img = image::DynamicImage::ImageRgba32F(image::Rgba32FImage::new(2, 2));
        let e = save_png(&img, &p).unwrap_err();
        assert!(matches!(e, DatasetError::ImageWrite { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("{}: cannot write image", p.display())), "{msg}");
        // A folder where the file should go: the system's error, with the path.
        let gray = image::DynamicImage::ImageLuma8(GrayImage::new(2, 2));
        let e = save_png(&gray, &dir.path().join("gt")).unwrap_err();
        assert!(matches!(e, DatasetError::Io { .. }), "{e:?}");
        assert!(!e.to_string().contains("cannot read"), "{e}");
    }
}
