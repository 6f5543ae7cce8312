//! MVTec AD 2: `test_public/{good,bad}` and `test_public/ground_truth/bad` become `test` and
//! `ground_truth`; `test_private*` are dropped (they have no ground truth).

use std::path::Path;

use ikd_data::DataError;

use super::{dir_name, list_dir, move_images};
use crate::error::Result;

/// MVTec AD 2: `test_public` becomes `test` and `ground_truth`.
pub(super) fn ad2(from: &Path, to: &Path) -> Result<()> {
    let n = move_images(&from.join("train").join("good"), &to.join("train").join("good"), false)?;
    if n == 0 {
        return Err(DataError::EmptyTrain { path: from.join("train").join("good") }.into());
    }
    move_images(&from.join("validation").join("good"), &to.join("validation").join("good"), false)?;
    let public = from.join("test_public");
    if !public.is_dir() {
        return Err(DataError::MissingDir { path: public }.into());
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
