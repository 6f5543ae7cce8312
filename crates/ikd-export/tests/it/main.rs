//! Integration tests of ikd-export: what the exporter writes and refuses, and (in `parity`,
//! run by `cargo xtask test` with its Python environment) onnxruntime's and OpenVINO's outputs
//! against the `Predictor`'s.

mod export;
mod parity;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The reference fixtures beside the checkout.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

/// A folder of this test binary's own under cargo's temporary folder, emptied first.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ikd-export-it").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A real-size `hrnet_w18_small` pair (random teacher, student after one epoch: four AdamW steps) trained on
/// the `coffee` fixture category at 64×64; tested (`metrics.json`: thresholds) when `tested`.
fn make_run(dir: &Path, tested: bool) -> PathBuf {
    let run = dir.join("run");
    let config = ikd::TrainConfig {
        data_root: fixtures().join("trajectory/cli/data"),
        category: "coffee".into(),
        backbone: "hrnet_w18_small".into(),
        teacher_weights: ikd::TeacherWeights::Random,
        image_size: 64,
        load_size: 64,
        epochs: 1,
        batch_size: 2,
        shuffle: false,
        seed: 7,
        ..Default::default()
    };
    ikd::train(&config, &run, ikd::TrainOptions::default()).unwrap();
    if tested {
        let opts = ikd::TestOptions { heatmaps: false, ..Default::default() };
        ikd::test_run(&run, &opts).unwrap();
    }
    run
}

/// The shared tested run (trained once per test binary).
pub fn tested_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| make_run(&scratch("tested"), true))
}

/// The shared untested run.
pub fn untested_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| make_run(&scratch("untested"), false))
}
