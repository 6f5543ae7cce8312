//! `cargo xtask demo`: the whole pipeline offline — the synthetic dataset, a small HRNet with a
//! random teacher trained and tested on each category, and the report. No network, no GPU.
//!
//! A random teacher is not a useful one (the paper's teacher is ImageNet-pretrained), so the
//! demo's scores only show that the pipeline works end to end, not the method's accuracy.

use std::path::PathBuf;

use anyhow::Result;
use ikd::{TeacherWeights, TrainConfig};
use ikd_data::synthetic::{generate, SyntheticConfig, Texture};

use crate::pipeline::{run_jobs, Job};
use crate::util::workspace_root;

/// Arguments of `cargo xtask demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// A reduced demo for CI: two categories, fewer and smaller images (its own folders:
    /// `data/synthetic-quick`, `runs/demo-quick`, `reports/demo-quick`).
    #[arg(long)]
    pub quick: bool,
    /// The synthetic categories (default: all four textures; with --quick: carpet and tile).
    #[arg(long, num_args = 1..)]
    pub categories: Vec<Texture>,
    /// Where the synthetic dataset goes (default `data/synthetic`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Folder of the runs (default `runs/demo`).
    #[arg(long)]
    pub runs: Option<PathBuf>,
    /// Folder of the report (default `reports/demo`).
    #[arg(long)]
    pub report_out: Option<PathBuf>,
    /// Override the image side (a multiple of 32; the dataset is generated at this size).
    #[arg(long)]
    pub image_size: Option<u32>,
    /// Override the number of training images per category.
    #[arg(long)]
    pub train_images: Option<usize>,
    /// Override the number of epochs.
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Override the learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Hide progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

/// The demo's sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoSize {
    /// Side of the generated images and of the network input.
    pub image_size: u32,
    /// Training images per category.
    pub n_train: usize,
    /// Defect-free test images per category.
    pub n_test_good: usize,
    /// Defective test images per category.
    pub n_test_defect: usize,
    /// Epochs.
    pub epochs: u64,
}

impl DemoSize {
    /// The full demo (four categories in under ten minutes on a 2-core CPU).
    pub const FULL: DemoSize =
        DemoSize { image_size: 128, n_train: 16, n_test_good: 6, n_test_defect: 10, epochs: 40 };
    /// The reduced demo of `--quick`.
    pub const QUICK: DemoSize =
        DemoSize { image_size: 64, n_train: 8, n_test_good: 4, n_test_defect: 6, epochs: 1 };
}

/// The demo's learning rate: higher than the paper's (few steps, a randomly initialised teacher).
pub const DEMO_LR: f64 = 1e-3;

/// `cargo xtask demo`.
pub fn run(args: &DemoArgs) -> Result<()> {
    let (mut size, suffix) =
        if args.quick { (DemoSize::QUICK, "-quick") } else { (DemoSize::FULL, "") };
    size.image_size = args.image_size.unwrap_or(size.image_size);
    size.n_train = args.train_images.unwrap_or(size.n_train);
    size.epochs = args.epochs.unwrap_or(size.epochs);
    let categories = if !args.categories.is_empty() {
        args.categories.clone()
    } else if args.quick {
        vec![Texture::Carpet, Texture::Tile]
    } else {
        Texture::ALL.to_vec()
    };
    let root = workspace_root();
    let data =
        args.data.clone().unwrap_or_else(|| root.join("data").join(format!("synthetic{suffix}")));
    let runs = args.runs.clone().unwrap_or_else(|| root.join("runs").join(format!("demo{suffix}")));
    let report = args
        .report_out
        .clone()
        .unwrap_or_else(|| root.join("reports").join(format!("demo{suffix}")));

    let missing: Vec<Texture> =
        categories.iter().copied().filter(|t| !data.join(t.name()).is_dir()).collect();
    if !missing.is_empty() {
        tracing::info!("generating {} synthetic categories in {}", missing.len(), data.display());
        let cfg = SyntheticConfig {
            categories: missing,
            image_size: size.image_size,
            n_train: size.n_train,
            n_test_good: size.n_test_good,
            n_test_defect: size.n_test_defect,
            seed: 0,
        };
        generate(&cfg, &data)?;
    }
    let base = TrainConfig {
        data_root: std::path::absolute(&data).unwrap_or(data),
        backbone: "hrnet_w18_small".into(),
        teacher_weights: TeacherWeights::Random,
        image_size: size.image_size,
        load_size: size.image_size,
        epochs: size.epochs,
        batch_size: 2,
        lr: args.lr.unwrap_or(DEMO_LR),
        ..TrainConfig::default()
    };
    let jobs = categories
        .iter()
        .map(|t| Job {
            config: TrainConfig { category: t.name().to_string(), ..base.clone() },
            run_dir: runs.join(t.name()),
        })
        .collect();
    run_jobs(jobs, &["cpu".to_string()], !args.no_progress)?;
    crate::report::write_report(&runs, &report, &crate::paper::default_path(), 3)?;
    println!("report: {}", report.join("report.html").display());
    Ok(())
}
