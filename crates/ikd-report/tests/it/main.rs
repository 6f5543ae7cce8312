//! Integration tests of ikd-report on real runs: two tiny categories trained and tested with
//! `ikd` (synthetic textures under MVTec AD names, so the paper's values apply; a random teacher),
//! their report, its errors, and the report rendered in headless Chromium.

mod render;
mod report;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ikd::{TeacherWeights, TestOptions, TrainConfig, TrainOptions};
use ikd_data::synthetic::{generate, SyntheticConfig, Texture};

/// The runs every test reports on.
pub struct World {
    /// Scratch folder, kept after the tests for inspection (under cargo's `target/tmp`).
    pub dir: PathBuf,
    /// The folder of run folders (`carpet/`, `grid/`).
    pub runs: PathBuf,
}

/// The categories of the runs.
pub const CATEGORIES: [Texture; 2] = [Texture::Carpet, Texture::Grid];

/// Optimiser steps of each run: 2 epochs of 4 training images in batches of 2.
pub const STEPS: u64 = 4;

/// The paper's table shipped with the workspace.
pub fn paper_csv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/ikd_paper_mvtec.csv")
}

fn build_world() -> World {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ikd-report-it");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let data = dir.join("data");
    let cfg = SyntheticConfig {
        categories: CATEGORIES.to_vec(),
        image_size: 64,
        n_train: 4,
        n_test_good: 2,
        n_test_defect: 3,
        seed: 7,
    };
    generate(&cfg, &data).unwrap();
    let runs = dir.join("runs");
    for t in CATEGORIES {
        // Without the synthetic marker the categories pass for MVTec AD's.
        std::fs::remove_file(data.join(t.name()).join(ikd_data::synthetic::MARKER)).unwrap();
        let config = TrainConfig {
            data_root: data.clone(),
            category: t.name().into(),
            backbone: "hrnet_w18_small".into(),
            teacher_weights: TeacherWeights::Random,
            image_size: 64,
            load_size: 64,
            epochs: 2,
            batch_size: 2,
            lr: 1e-3,
            ..TrainConfig::default()
        };
        let run = runs.join(t.name());
        ikd::train(&config, &run, TrainOptions::default()).unwrap();
        ikd::test_run(&run, &TestOptions::default()).unwrap();
    }
    World { dir, runs }
}

/// The runs, trained and tested once for all tests.
pub fn world() -> &'static World {
    static ONCE: OnceLock<World> = OnceLock::new();
    ONCE.get_or_init(build_world)
}

/// A fresh folder under the scratch folder.
pub fn scratch(name: &str) -> PathBuf {
    let d = world().dir.join(name);
    if d.exists() {
        std::fs::remove_dir_all(&d).unwrap();
    }
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Copies the folder `from` to `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// The names in a folder, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
