//! `cargo xtask demo`: the whole pipeline on the synthetic dataset — hrnet_w18_small trained and
//! tested on each category, and the report. No GPU; no network unless the teacher is fetched.
//!
//! The teacher (`--teacher`, default `auto`) is timm's ImageNet-pretrained hrnet_w18_small when
//! the Hugging Face cache holds it or the hub answers, else a random network. A random teacher is
//! not a useful one (the paper's is ImageNet-pretrained): its scores only show that the pipeline
//! works end to end, and the terminal and the report say so.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use ikd::{TeacherIdentity, TeacherWeights, TrainConfig};
use ikd_data::synthetic::{generate, SyntheticConfig, Texture};
use ikd_hrnet::HubOptions;

use crate::pipeline::{run_jobs, Job};
use crate::util::workspace_root;

/// Arguments of `cargo xtask demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// A reduced demo for CI: two categories, fewer and smaller images (its own folders:
    /// `data/synthetic-quick`, `runs/demo-quick/<teacher>`, `reports/demo-quick`).
    #[arg(long)]
    pub quick: bool,
    /// The synthetic categories (default: all four textures; with --quick: carpet and tile).
    #[arg(long, num_args = 1..)]
    pub categories: Vec<Texture>,
    /// Where the synthetic dataset goes (default `data/synthetic`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Folder of the runs (default `runs/demo/<teacher>`: `hub` or `random`).
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
    /// The teacher: `hub` (timm's ImageNet weights from the Hugging Face hub or its cache; an
    /// error when neither has them), `random` (a seeded random network, no network access), or
    /// `auto`: the hub's when the cache holds them or the hub answers, else random with a warning.
    #[arg(long, value_enum, default_value_t = TeacherChoice::Auto)]
    pub teacher: TeacherChoice,
    /// Hide progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

/// `--teacher` of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TeacherChoice {
    /// The hub's weights when they can be had, else a random teacher.
    Auto,
    /// timm's ImageNet weights (cache or download); an error when neither works.
    Hub,
    /// A seeded random teacher.
    Random,
}

/// The demo's backbone (timm's smallest HRNet).
pub const BACKBONE: &str = "hrnet_w18_small";

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
    let teacher_weights = choose_teacher(args.teacher)?;
    // The runs' seed is the default one (`base` below), from which a random teacher's derives.
    let teacher =
        TeacherIdentity::resolve(BACKBONE, &teacher_weights, TrainConfig::default().seed)?;
    println!("teacher: {}", teacher.describe());
    // Runs with different teachers are different runs: each teacher has its own folder.
    let runs = args.runs.clone().unwrap_or_else(|| {
        root.join("runs").join(format!("demo{suffix}")).join(teacher_weights.to_string())
    });
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
        backbone: BACKBONE.into(),
        teacher_weights,
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
    run_jobs(jobs, &["cpu".to_string()], !args.no_progress, false)?;
    crate::report::write(&runs, &report, Some(&crate::report::default_paper()), 3)?;
    println!("teacher: {}", teacher.describe());
    if teacher.is_random() {
        println!("{}", ikd_report::RANDOM_TEACHER_NOTE);
    }
    Ok(())
}

/// Resolves `--teacher`: `auto` looks in the Hugging Face cache, then asks the hub when it can be
/// reached within a few seconds, and falls back to a random teacher with a warning.
fn choose_teacher(choice: TeacherChoice) -> Result<TeacherWeights> {
    let fetch = || {
        ikd_hrnet::fetch_timm_weights(BACKBONE).with_context(|| {
            format!("fetching timm's ImageNet weights of {BACKBONE} from the Hugging Face hub")
        })
    };
    match choice {
        TeacherChoice::Random => Ok(TeacherWeights::Random),
        TeacherChoice::Hub => fetch().map(|_| TeacherWeights::Hub),
        TeacherChoice::Auto => {
            let opts = HubOptions::from_env();
            let cached = ikd_hrnet::fetch_timm_weights_with(
                BACKBONE,
                &HubOptions { offline: true, ..opts.clone() },
            );
            let reason = match cached {
                Ok(_) => return Ok(TeacherWeights::Hub),
                Err(_) if opts.offline => {
                    "HF_HUB_OFFLINE is set and the cache does not hold them".to_string()
                }
                Err(_) => match hub_reachable(&opts, Duration::from_secs(5)) {
                    Err(e) => e,
                    Ok(()) => match fetch() {
                        Ok(_) => return Ok(TeacherWeights::Hub),
                        Err(e) => format!("{e:#}"),
                    },
                },
            };
            tracing::warn!(
                "no ImageNet teacher ({reason}): the demo uses a random teacher, so its scores \
                 will show that the pipeline runs, not what the method achieves. For the real \
                 teacher, run `cargo xtask weights --backbone {BACKBONE}` once with network access \
                 (or copy timm's {} into {}), then the demo again",
                ikd_hrnet::timm_repo_id(BACKBONE),
                opts.cache_dir.display()
            );
            Ok(TeacherWeights::Random)
        }
    }
}

/// Whether the hub's host accepts a TCP connection within `timeout` (a firewall that drops
/// packets would otherwise hold the download for minutes).
fn hub_reachable(opts: &HubOptions, timeout: Duration) -> Result<(), String> {
    use std::net::{TcpStream, ToSocketAddrs};
    let endpoint = opts.endpoint.as_deref().unwrap_or("https://huggingface.co");
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("https", endpoint));
    let host = rest.split('/').next().unwrap_or(rest);
    let addr = if host.contains(':') && !host.ends_with(']') {
        host.to_string()
    } else {
        format!("{host}:{}", if scheme == "http" { 80 } else { 443 })
    };
    let addrs =
        addr.to_socket_addrs().map_err(|e| format!("{endpoint} cannot be resolved: {e}"))?;
    for a in addrs {
        if TcpStream::connect_timeout(&a, timeout).is_ok() {
            return Ok(());
        }
    }
    Err(format!("{endpoint} cannot be reached"))
}
