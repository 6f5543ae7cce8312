//! Helpers shared by the tests.

use std::path::{Path, PathBuf};

use ikd_data::synthetic::{generate, SyntheticConfig, Texture};

/// The shared fixtures folder.
pub fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures"))
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

/// AUROC by the Mann–Whitney statistic (ties count one half).
pub fn auroc(scores: &[f64], labels: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            ranks[idx[k]] = r;
        }
        i = j + 1;
    }
    let n_pos = labels.iter().filter(|&&l| l).count() as f64;
    let n_neg = labels.len() as f64 - n_pos;
    let sum_pos: f64 = ranks.iter().zip(labels).filter(|(_, &l)| l).map(|(r, _)| r).sum();
    (sum_pos - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
}
