//! MVTec LOCO AD: images moved, the masks of each image (`ground_truth/<defect>/<stem>/NNN.png`)
//! unioned into `ground_truth/<defect>/<stem>_mask.png`.

use std::path::Path;

use ikd_data::DataError;
use image::GrayImage;

use super::{binarised, dir_name, layout_err, list_dir, list_images, move_images, save_png};
use crate::error::Result;

/// MVTec LOCO AD: images moved, each image's masks unioned.
pub(super) fn loco(from: &Path, to: &Path) -> Result<()> {
    for split in ["train", "validation", "test"] {
        let dir = from.join(split);
        if !dir.is_dir() {
            if split == "validation" {
                continue;
            }
            return Err(DataError::MissingDir { path: dir }.into());
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
