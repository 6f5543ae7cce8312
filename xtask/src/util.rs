//! Paths shared by the tasks.

use std::path::{Path, PathBuf};

/// The workspace root (the folder above `xtask/`): default paths are anchored here.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}
