//! KolektorSDD: `kosNN/PartN.jpg` + `PartN_label.bmp` to one category, masks binarised; the
//! defect-free images split 80/20 with seed [`KOLEKTOR_SEED`], written to `split.csv`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ikd_data::is_image_path;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::{binarised, dir_name, file_stem, layout_err, list_dir, move_file, save_png};
use crate::error::Result;

/// The seed of KolektorSDD's 80/20 split of its defect-free images.
///
/// ```
/// assert_eq!(ikd_datasets::KOLEKTOR_SEED, 42);
/// ```
pub const KOLEKTOR_SEED: u64 = 42;

/// The share of KolektorSDD's defect-free images that goes to the test set.
pub const KOLEKTOR_TEST_SHARE: f64 = 0.2;

/// KolektorSDD: one category; anomalous = a mask with any non-zero pixel; defect-free images
/// split with [`KOLEKTOR_SEED`], the split written to `split.csv`.
pub(super) fn kolektor(source: &Path, cat: &Path) -> Result<()> {
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
