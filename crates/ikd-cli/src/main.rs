//! `ikd`: train, test, predict and evaluate IKD anomaly segmenters from the command line, and
//! report on finished runs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use ikd::{TeacherWeights, TestOptions, TrainConfig, TrainOptions};
use ikd_distill::IkdLossConfig;

/// mimalloc reuses freed memory instead of faulting in fresh pages for every tensor
/// (`ikd::tune_cpu_threads` turns its purging off).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Informative Knowledge Distillation for image anomaly segmentation (Cao et al., 2022).
#[derive(Parser)]
#[command(name = "ikd", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Hide progress bars.
    #[arg(long, global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Train a student on a category's defect-free images (then test it, unless --no-eval).
    Train(TrainArgs),
    /// Test a finished run on its category's test images: metrics.json and heat maps.
    Test(TestArgs),
    /// Run a finished run on any PNG/JPEG images: heat maps, masks and scores.
    Predict(PredictArgs),
    /// Score any method's anomaly maps (MVTec AD evaluation layout) against the ground truth.
    Evaluate(EvaluateArgs),
    /// Write the report of finished runs: tables, ROC, PRO and training curves, a gallery.
    Report(ReportArgs),
}

#[derive(Args)]
struct TrainArgs {
    /// Folder holding the categories in MVTec AD layout.
    #[arg(long)]
    data_root: PathBuf,
    /// The category to train on.
    #[arg(long)]
    category: String,
    /// The run directory to create (or continue with --resume).
    #[arg(long)]
    out: PathBuf,
    /// hrnet_w18_small | hrnet_w18_small_v2 | hrnet_w18 | hrnet_w32 | hrnet_w48, or a timm cfg JSON file.
    #[arg(long, default_value = "hrnet_w32")]
    backbone: String,
    /// hub (timm's ImageNet weights via the Hugging Face hub) | PATH.safetensors | random.
    #[arg(long, default_value = "hub")]
    teacher_weights: String,
    /// Start the student from these weights (timm layout) instead of a seeded initialisation.
    #[arg(long)]
    student_init: Option<PathBuf>,
    /// Side of the centre crop fed to the networks.
    #[arg(long, default_value_t = 256)]
    image_size: u32,
    /// Side the images are resized to before cropping.
    #[arg(long, default_value_t = 256)]
    load_size: u32,
    #[arg(long, default_value_t = 50)]
    epochs: u64,
    #[arg(long, default_value_t = 2)]
    batch_size: usize,
    #[arg(long, default_value_t = 5e-5)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Feature levels of the loss (0..3), comma-separated.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    levels: Vec<usize>,
    /// Weight of each level, comma-separated.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    level_weights: Vec<f64>,
    /// AHSM margin momentum.
    #[arg(long, default_value_t = 0.01)]
    alpha: f64,
    /// AHSM margin: mean + beta * std.
    #[arg(long, default_value_t = 2.0)]
    beta: f64,
    /// Weight of the context-similarity loss (0 switches it off).
    #[arg(long, default_value_t = 1.0)]
    gamma: f64,
    /// Keep every pixel (no hard-sample mining).
    #[arg(long)]
    no_mining: bool,
    /// Visit the training images in sorted file order instead of shuffling them.
    #[arg(long)]
    no_shuffle: bool,
    /// Stop after this many optimiser steps in all.
    #[arg(long)]
    max_steps: Option<u64>,
    /// cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Do not test the run when training has finished.
    #[arg(long)]
    no_eval: bool,
}

#[derive(Args)]
struct TestArgs {
    /// The run directory.
    #[arg(long)]
    run: PathBuf,
    /// Read the dataset here instead of the run's data root.
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// Also write 32-bit float TIFF maps in MVTec AD's evaluation layout under RUN/anomaly_maps.
    #[arg(long)]
    save_maps: bool,
    /// cpu or cuda:N (default: the run's).
    #[arg(long)]
    device: Option<String>,
}

#[derive(Args)]
struct PredictArgs {
    /// The run directory.
    #[arg(long)]
    run: PathBuf,
    /// Images or folders of images.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Pixel threshold of the masks (default: the F1-optimal one from the run's metrics.json).
    #[arg(long)]
    threshold: Option<f64>,
    /// cpu or cuda:N (default: the run's).
    #[arg(long)]
    device: Option<String>,
}

#[derive(Args)]
struct EvaluateArgs {
    /// Folder of anomaly maps: MAPS/<category>/test/<defect>/<stem>.tiff (or .png).
    #[arg(long)]
    maps: PathBuf,
    /// Folder holding the categories in MVTec AD layout.
    #[arg(long)]
    data_root: PathBuf,
    /// Categories to score (default: every folder in MAPS).
    #[arg(long, value_delimiter = ',')]
    category: Vec<String>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct ReportArgs {
    /// Run folders, or folders of run folders (one per category); unfinished runs in a folder are
    /// left out.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// The report folder to write (replaced when it exists).
    #[arg(long)]
    out: PathBuf,
    /// The paper's table (CSV: category,kind,ikd_pixel_auroc,ikd_au_pro) to compare MVTec AD
    /// categories with.
    #[arg(long)]
    paper: Option<PathBuf>,
    /// Test images per run in each half of the gallery (worst, best).
    #[arg(long, default_value_t = 3)]
    gallery: usize,
}

fn train(args: TrainArgs, progress: bool) -> Result<()> {
    let loss = IkdLossConfig {
        alpha: args.alpha,
        beta: args.beta,
        gamma: args.gamma,
        levels: args.levels,
        weights: args.level_weights,
        mining: !args.no_mining,
        context: args.gamma != 0.0,
    };
    let teacher_weights: TeacherWeights = args.teacher_weights.parse().expect("infallible");
    if let TeacherWeights::File(p) = &teacher_weights {
        if !p.is_file() {
            bail!("{}: teacher weights file not found", p.display());
        }
    }
    let config = TrainConfig {
        data_root: args.data_root,
        category: args.category,
        backbone: args.backbone,
        teacher_weights,
        student_init: args.student_init,
        image_size: args.image_size,
        load_size: args.load_size,
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
        loss,
        shuffle: !args.no_shuffle,
        max_steps: args.max_steps,
        device: args.device,
    };
    let summary = ikd::train(&config, &args.out, TrainOptions { resume: args.resume, progress })?;
    println!(
        "trained {} steps ({} epochs) in {:.1} s, {:.2} images/s, last loss {}",
        summary.steps,
        summary.epochs_done,
        summary.seconds,
        summary.images_per_s,
        summary.last_loss.map_or("-".to_string(), |l| format!("{l:.5}"))
    );
    if !summary.finished {
        println!(
            "stopped before the last epoch: continue with `ikd train --resume --out {} ...`",
            args.out.display()
        );
        return Ok(());
    }
    if !args.no_eval {
        test(
            TestArgs { run: args.out, data_root: None, save_maps: false, device: None },
            progress,
        )?;
    }
    Ok(())
}

fn test(args: TestArgs, progress: bool) -> Result<()> {
    let opts = TestOptions {
        data_root: args.data_root,
        device: args.device,
        save_maps: args.save_maps,
        progress,
        ..TestOptions::default()
    };
    let m = ikd::test_run(&args.run, &opts)?;
    print_metrics(&m);
    println!("wrote {}", args.run.join(ikd::files::METRICS).display());
    Ok(())
}

fn print_metrics(m: &ikd::TestMetrics) {
    println!(
        "{}: pixel AUROC {:.4}  AU-PRO {:.4}  PRO (IKD, 200 thr.) {:.4}  image AUROC {:.4}  AP {:.4}  F1-max {:.4} at {:.5}",
        m.category, m.pixel_auroc, m.au_pro, m.pro_ikd200, m.image_auroc, m.pixel_ap, m.f1_max, m.threshold
    );
    for (defect, d) in &m.per_defect {
        println!("  {defect:<24} {:>4} images  pixel AUROC {:.4}", d.images, d.pixel_auroc);
    }
}

fn predict(args: PredictArgs) -> Result<()> {
    let s =
        ikd::predict(&args.run, &args.inputs, &args.out, args.threshold, args.device.as_deref())?;
    for p in &s.images {
        println!(
            "{}\t{:.5}\t{}",
            p.input.display(),
            p.score,
            if p.anomalous { "anomalous" } else { "normal" }
        );
    }
    println!("wrote {} (threshold {:.5})", args.out.join("summary.json").display(), s.threshold);
    Ok(())
}

fn evaluate(args: EvaluateArgs) -> Result<()> {
    let results = ikd::evaluate_maps(&args.maps, &args.data_root, &args.category)?;
    for m in &results {
        print_metrics(m);
    }
    if let Some(path) = args.json {
        let json = serde_json::to_string_pretty(&results)?;
        ikd::atomic_write(&path, json.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn report(args: ReportArgs) -> Result<()> {
    let runs = ikd_report::find_runs(&args.runs)?;
    let paper = args.paper.as_deref().map(ikd_report::PaperTable::load).transpose()?;
    let options = ikd_report::ReportOptions { paper, gallery: args.gallery };
    let results = ikd_report::write_report(&runs, &args.out, &options)?;
    println!("{} runs: {}", results.categories.len(), args.out.join("report.html").display());
    Ok(())
}

fn main() -> ExitCode {
    ikd::tune_cpu_threads();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let progress = !cli.quiet;
    let result = match cli.command {
        Command::Train(a) => train(a, progress),
        Command::Test(a) => test(a, progress),
        Command::Predict(a) => predict(a),
        Command::Evaluate(a) => evaluate(a),
        Command::Report(a) => report(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
