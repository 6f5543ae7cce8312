//! Conversions of benchmark archives to MVTec AD layout, run by
//! [`fetch_dataset`](crate::download::fetch_dataset) on a freshly extracted archive (the source
//! folder is consumed: files are moved, not copied).
//!
//! | dataset | source layout | result |
//! | --- | --- | --- |
//! | VisA | `split_csv/1cls.csv` (`object,split,label,image,mask`) | `<object>/train/good`, `test/{good,bad}`, `ground_truth/bad/<stem>_mask.png` (non-zero → 255) |
//! | BTAD | `<NN>/train/ok`, `test/{ok,ko}`, `ground_truth/ko/<stem>.png`, BMP images | the same folders, every BMP as PNG (`ok` is read as the defect-free class) |
//! | KolektorSDD | `kosNN/PartN.jpg` + `PartN_label.bmp` | `kolektor/train/good`, `test/{good,defect}`, masks binarised; defect-free images split 80/20 with seed [`KOLEKTOR_SEED`], written to `kolektor/split.csv` |
//! | MVTec LOCO AD | `ground_truth/<defect>/<stem>/NNN.png` | the union of each image's masks as `ground_truth/<defect>/<stem>_mask.png` |
//! | MVTec AD 2 | `test_public/{good,bad}`, `test_public/ground_truth/bad` | `test/{good,bad}`, `ground_truth/bad`; `test_private*` dropped (no ground truth) |

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use image::GrayImage;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::download::{Conversion, Manifest};
use crate::error::{DataError, IoContext, Result};
use crate::image_io::is_image_path;
use crate::layout::{dir_name, file_stem, list_dir, list_images};

/// The seed of KolektorSDD's 80/20 split of its defect-free images.
///
/// ```
/// assert_eq!(ikd_data::convert::KOLEKTOR_SEED, 42);
/// ```
pub const KOLEKTOR_SEED: u64 = 42;

/// The share of KolektorSDD's defect-free images that goes to the test set.
pub const KOLEKTOR_TEST_SHARE: f64 = 0.2;

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
/// use ikd_data::download::{Conversion, Manifest};
/// let m = Manifest::load("datasets/btad.json")?;
/// ikd_data::convert::convert(Conversion::Btad, "extracted/BTech_Dataset_transformed".as_ref(),
///     "data/btad".as_ref(), &m, true)?;
/// # Ok::<(), ikd_data::DataError>(())
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
        Conversion::Visa => visa(source, out)?,
        Conversion::Kolektor => {
            let name = manifest.categories.first().map_or("kolektor", |c| c.name.as_str());
            kolektor(source, &out.join(name))?
        }
        Conversion::Btad | Conversion::Loco | Conversion::MvtecAd2 => {
            for c in &manifest.categories {
                let (from, to) = (source.join(&c.name), out.join(&c.name));
                if !from.is_dir() {
                    return Err(DataError::MissingCategory { name: c.name.clone(), path: from });
                }
                match conversion {
                    Conversion::Btad => btad(&from, &to)?,
                    Conversion::Loco => loco(&from, &to)?,
                    _ => ad2(&from, &to)?,
                }
                pb.inc(1);
            }
        }
    }
    pb.finish_and_clear();
    Ok(())
}

fn layout_err(path: &Path, message: impl Into<String>) -> DataError {
    DataError::Layout { path: path.to_path_buf(), message: message.into() }
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
            let img = crate::image_io::load_image(p)?;
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
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|source| DataError::Decode { path: path.to_path_buf(), source })
}

/// A mask as 0/255: every non-zero pixel (of any channel) becomes 255.
fn binarised(path: &Path) -> Result<GrayImage> {
    let m = crate::image_io::load_mask(path)?;
    Ok(GrayImage::from_fn(m.width(), m.height(), |x, y| {
        image::Luma([if m.get_pixel(x, y).0[0] != 0 { 255 } else { 0 }])
    }))
}

/// VisA: every row of `split_csv/1cls.csv` to its MVTec-layout place.
fn visa(source: &Path, out: &Path) -> Result<()> {
    let csv = source.join("split_csv").join("1cls.csv");
    let text = fs::read_to_string(&csv).at(&csv)?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or_else(|| layout_err(&csv, "empty split file"))?;
    let cols: Vec<String> = header.split(',').map(|c| c.trim().to_ascii_lowercase()).collect();
    let col = |name: &str| {
        cols.iter().position(|c| c == name).ok_or_else(|| {
            layout_err(&csv, format!("no `{name}` column (expected object,split,label,image,mask)"))
        })
    };
    let (c_obj, c_split, c_label, c_image, c_mask) =
        (col("object")?, col("split")?, col("label")?, col("image")?, col("mask")?);
    for (i, line) in lines {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let row_err = |m: String| layout_err(&csv, format!("line {}: {m}", i + 1));
        if f.len() != cols.len() {
            return Err(row_err(format!("{} fields, the header has {}", f.len(), cols.len())));
        }
        let (object, split, label, image) = (f[c_obj], f[c_split], f[c_label], f[c_image]);
        for (what, v) in [("object", object), ("image", image), ("mask", f[c_mask])] {
            if v.contains("..") || v.starts_with('/') || v.contains('\\') {
                return Err(row_err(format!("{what} `{v}` is not a plain relative path")));
            }
        }
        if object.is_empty() || object.contains('/') {
            return Err(row_err(format!("object `{object}` is not a folder name")));
        }
        let anomalous = !label.eq_ignore_ascii_case("normal");
        let split = match split.to_ascii_lowercase().as_str() {
            "train" if !anomalous => "train",
            "train" => return Err(row_err(format!("anomalous image {image} in the train split"))),
            "test" => "test",
            s => return Err(row_err(format!("unknown split `{s}` (train or test)"))),
        };
        let src = source.join(image);
        if !src.is_file() || !is_image_path(&src) {
            return Err(row_err(format!("image {} not found", src.display())));
        }
        let defect = if anomalous { "bad" } else { "good" };
        let name = src.file_name().unwrap_or_default();
        let cat = out.join(object);
        move_file(&src, &cat.join(split).join(defect).join(name))?;
        if anomalous && !f[c_mask].is_empty() {
            let mask = source.join(f[c_mask]);
            let m = binarised(&mask)?;
            let dst =
                cat.join("ground_truth").join("bad").join(format!("{}_mask.png", file_stem(&src)));
            save_png(&image::DynamicImage::ImageLuma8(m), &dst)?;
        }
    }
    Ok(())
}

/// BTAD: the folders as they are, BMP → PNG.
fn btad(from: &Path, to: &Path) -> Result<()> {
    for sub in ["train", "test", "ground_truth"] {
        let dir = from.join(sub);
        if !dir.is_dir() {
            if sub == "ground_truth" {
                continue;
            }
            return Err(DataError::MissingDir { path: dir });
        }
        for class in list_dir(&dir)? {
            if class.is_dir() {
                move_images(&class, &to.join(sub).join(dir_name(&class)), true)?;
            }
        }
    }
    Ok(())
}

/// MVTec LOCO AD: images moved, each image's masks unioned.
fn loco(from: &Path, to: &Path) -> Result<()> {
    for split in ["train", "validation", "test"] {
        let dir = from.join(split);
        if !dir.is_dir() {
            if split == "validation" {
                continue;
            }
            return Err(DataError::MissingDir { path: dir });
        }
        for class in list_dir(&dir)? {
            if class.is_dir() {
                move_images(&class, &to.join(split).join(dir_name(&class)), false)?;
            }
        }
    }
    let gt = from.join("ground_truth");
    if gt.is_dir() {
        for defect in list_dir(&gt)? {
            for image_dir in list_dir(&defect)? {
                let parts = list_images(&image_dir)?;
                let mut union: Option<GrayImage> = None;
                for p in &parts {
                    let m = binarised(p)?;
                    match &mut union {
                        None => union = Some(m),
                        Some(u) => {
                            if u.dimensions() != m.dimensions() {
                                return Err(layout_err(
                                    p,
                                    format!(
                                        "mask is {}×{}, the image's other masks are {}×{}",
                                        m.width(),
                                        m.height(),
                                        u.width(),
                                        u.height()
                                    ),
                                ));
                            }
                            for (a, b) in u.pixels_mut().zip(m.pixels()) {
                                a.0[0] = a.0[0].max(b.0[0]);
                            }
                        }
                    }
                }
                let Some(u) = union else {
                    return Err(layout_err(&image_dir, "holds no mask"));
                };
                let dst = to
                    .join("ground_truth")
                    .join(dir_name(&defect))
                    .join(format!("{}_mask.png", dir_name(&image_dir)));
                save_png(&image::DynamicImage::ImageLuma8(u), &dst)?;
            }
        }
    }
    Ok(())
}

/// MVTec AD 2: `test_public` becomes `test` and `ground_truth`.
fn ad2(from: &Path, to: &Path) -> Result<()> {
    let n = move_images(&from.join("train").join("good"), &to.join("train").join("good"), false)?;
    if n == 0 {
        return Err(DataError::EmptyTrain { path: from.join("train").join("good") });
    }
    move_images(&from.join("validation").join("good"), &to.join("validation").join("good"), false)?;
    let public = from.join("test_public");
    if !public.is_dir() {
        return Err(DataError::MissingDir { path: public });
    }
    for class in list_dir(&public)? {
        let name = dir_name(&class);
        if name == "ground_truth" || !class.is_dir() {
            continue;
        }
        move_images(&class, &to.join("test").join(&name), false)?;
    }
    let gt = public.join("ground_truth");
    if gt.is_dir() {
        for defect in list_dir(&gt)? {
            move_images(&defect, &to.join("ground_truth").join(dir_name(&defect)), false)?;
        }
    }
    Ok(())
}

/// KolektorSDD: one category; anomalous = a mask with any non-zero pixel; defect-free images
/// split with [`KOLEKTOR_SEED`], the split written to `split.csv`.
fn kolektor(source: &Path, cat: &Path) -> Result<()> {
    let mut normal: Vec<(String, PathBuf)> = Vec::new();
    let mut rows: BTreeMap<String, (&'static str, &'static str)> = BTreeMap::new();
    let mut n_items = 0;
    for item in list_dir(source)? {
        let item_name = dir_name(&item);
        if !item.is_dir() || !item_name.starts_with("kos") {
            continue;
        }
        n_items += 1;
        for p in list_dir(&item)? {
            let stem = file_stem(&p);
            if stem.ends_with("_label") || !is_image_path(&p) {
                continue;
            }
            let label = ["bmp", "png"]
                .iter()
                .map(|e| item.join(format!("{stem}_label.{e}")))
                .find(|l| l.is_file())
                .ok_or_else(|| {
                    layout_err(&p, format!("no label image {stem}_label.bmp beside it"))
                })?;
            let m = binarised(&label)?;
            let ext =
                p.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
            let name = format!("{item_name}_{stem}");
            if m.pixels().any(|v| v.0[0] != 0) {
                move_file(&p, &cat.join("test").join("defect").join(format!("{name}.{ext}")))?;
                let dst = cat.join("ground_truth").join("defect").join(format!("{name}_mask.png"));
                save_png(&image::DynamicImage::ImageLuma8(m), &dst)?;
                rows.insert(format!("{name}.{ext}"), ("test", "defect"));
            } else {
                normal.push((format!("{name}.{ext}"), p));
            }
        }
    }
    if n_items == 0 {
        return Err(layout_err(source, "no kosNN folders (not KolektorSDD's layout)"));
    }
    normal.sort();
    let n_test = (normal.len() as f64 * KOLEKTOR_TEST_SHARE).round() as usize;
    let mut order: Vec<usize> = (0..normal.len()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(KOLEKTOR_SEED));
    let held: std::collections::BTreeSet<usize> = order.into_iter().take(n_test).collect();
    for (i, (name, p)) in normal.iter().enumerate() {
        let split = if held.contains(&i) { "test" } else { "train" };
        move_file(p, &cat.join(split).join("good").join(name))?;
        rows.insert(name.clone(), (split, "good"));
    }
    let mut csv = format!(
        "# KolektorSDD split by ikd: defective images to test, defect-free ones {:.0}/{:.0} with seed {KOLEKTOR_SEED}\nimage,split,class\n",
        (1.0 - KOLEKTOR_TEST_SHARE) * 100.0,
        KOLEKTOR_TEST_SHARE * 100.0
    );
    for (name, (split, class)) in &rows {
        csv.push_str(&format!("{name},{split},{class}\n"));
    }
    ikd_io::atomic_write(&cat.join("split.csv"), csv.as_bytes())?;
    Ok(())
}
