//! Trains a small IKD run on a synthetic category (a seeded random teacher: nothing to download),
//! tests it and scores one test image: the engine's whole cycle in about a minute on 2 cores.
//!
//! `cargo run --release -p ikd --example synthetic_run -- [work_dir]`

use ikd::{TeacherWeights, TestOptions, TrainConfig, TrainOptions};
use ikd_data::synthetic::{generate, SyntheticConfig, Texture};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let work = std::env::args().nth(1).map_or_else(|| tmp.path().to_path_buf(), Into::into);
    let data = work.join("data");
    let synthetic = SyntheticConfig {
        categories: vec![Texture::Tile],
        image_size: 64,
        n_train: 4,
        n_test_good: 2,
        n_test_defect: 2,
        seed: 0,
    };
    generate(&synthetic, &data)?;
    let config = TrainConfig {
        data_root: data.clone(),
        category: "tile".into(),
        backbone: "hrnet_w18_small".into(),
        teacher_weights: TeacherWeights::Random,
        image_size: 64,
        load_size: 64,
        epochs: 1,
        batch_size: 2,
        ..TrainConfig::default()
    };
    let run = work.join("runs").join("tile");
    ikd::train(&config, &run, TrainOptions::default())?;
    let metrics = ikd::test_run(&run, &TestOptions::default())?;
    println!("pixel AUROC {:.4}  AU-PRO {:.4}", metrics.pixel_auroc, metrics.au_pro);

    let predictor = ikd::Predictor::open(&run, &candle_core::Device::Cpu)?;
    let good = data.join("tile").join("test").join("good");
    let first = std::fs::read_dir(&good)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .min()
        .ok_or("no test image")?;
    let p = predictor.score(&ikd_data::load_image(&first)?)?;
    println!("{}: score {:.3}, anomalous: {:?}", first.display(), p.score, p.anomalous);
    Ok(())
}
