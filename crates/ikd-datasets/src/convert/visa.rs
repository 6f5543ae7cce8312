//! VisA: `split_csv/1cls.csv` (`object,split,label,image,mask`) to `<object>/train/good`,
//! `test/{good,bad}`, `ground_truth/bad/<stem>_mask.png` (non-zero → 255).

use std::fs;
use std::path::Path;

use ikd_data::is_image_path;

use super::{binarised, file_stem, layout_err, move_file, save_png};
use crate::error::{IoContext, Result};

/// VisA: every row of `split_csv/1cls.csv` to its MVTec-layout place.
pub(super) fn visa(source: &Path, out: &Path) -> Result<()> {
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
