//! BTAD: the folders as they are, every BMP as PNG (`ok` is read as the defect-free class).

use std::path::Path;

use ikd_data::DataError;

use super::{dir_name, list_dir, move_images};
use crate::error::Result;

/// BTAD: the folders as they are, BMP → PNG.
pub(super) fn btad(from: &Path, to: &Path) -> Result<()> {
    for sub in ["train", "test", "ground_truth"] {
        let dir = from.join(sub);
        if !dir.is_dir() {
            if sub == "ground_truth" {
                continue;
            }
            return Err(DataError::MissingDir { path: dir }.into());
        }
        for class in list_dir(&dir)? {
            if class.is_dir() {
                move_images(&class, &to.join(sub).join(dir_name(&class)), true)?;
            }
        }
    }
    Ok(())
}
