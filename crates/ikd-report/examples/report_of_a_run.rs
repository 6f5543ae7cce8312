//! Trains and tests a small IKD run on a synthetic category (a seeded random teacher), then
//! writes its report (Markdown, HTML, CSV, charts) beside the paper's table.
//!
//! `cargo run --release -p ikd-report --example report_of_a_run -- [work_dir]`

use ikd::{TeacherWeights, TestOptions, TrainConfig, TrainOptions};
use ikd_data::synthetic::{generate, SyntheticConfig, Texture};
use ikd_report::{find_runs, write_report, PaperTable, ReportOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let work = std::env::args().nth(1).map_or_else(|| tmp.path().to_path_buf(), Into::into);
    let data = work.join("data");
    let synthetic = SyntheticConfig {
        categories: vec![Texture::Carpet],
        image_size: 64,
        n_train: 4,
        n_test_good: 2,
        n_test_defect: 2,
        seed: 0,
    };
    generate(&synthetic, &data)?;
    let config = TrainConfig {
        data_root: data,
        category: "carpet".into(),
        backbone: "hrnet_w18_small".into(),
        teacher_weights: TeacherWeights::Random,
        image_size: 64,
        load_size: 64,
        epochs: 1,
        batch_size: 2,
        ..TrainConfig::default()
    };
    let runs = work.join("runs");
    ikd::train(&config, &runs.join("carpet"), TrainOptions::default())?;
    ikd::test_run(&runs.join("carpet"), &TestOptions::default())?;

    let paper =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/ikd_paper_mvtec.csv");
    let options = ReportOptions {
        paper: paper.is_file().then(|| PaperTable::load(&paper)).transpose()?,
        ..ReportOptions::default()
    };
    let out = work.join("report");
    let results = write_report(&find_runs(&[&runs])?, &out, &options)?;
    for m in &results.means {
        println!("{}: pixel AUROC {:.2} %", m.group, m.pixel_auroc);
    }
    println!("report in {}", out.display());
    Ok(())
}
