//! Helpers shared by the tests.

use std::path::{Path, PathBuf};

use ikd_data::synthetic::{generate, SyntheticConfig, Texture};

/// The workspace's `datasets/` folder.
pub fn datasets_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets"))
}

/// A small synthetic dataset: carpet (and grid if `two`), 16×16, 3 train, 2 good, 5 defective
/// (one of each kind).
pub fn tiny_dataset(root: &Path, two: bool) -> SyntheticConfig {
    let cfg = SyntheticConfig {
        categories: if two { vec![Texture::Carpet, Texture::Grid] } else { vec![Texture::Carpet] },
        image_size: 16,
        n_train: 3,
        n_test_good: 2,
        n_test_defect: 5,
        seed: 11,
    };
    generate(&cfg, root).expect("generate tiny dataset");
    cfg
}
