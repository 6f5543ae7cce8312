//! `ikd`: train, test, predict and evaluate IKD anomaly segmenters from the command line, and
//! report on finished runs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use ikd::{KernelPolicy, TeacherWeights, TestOptions, TrainOptions};
use ikd_cli::{DataSelection, TrainSettings};

mod export;
mod serve;

/// mimalloc reuses freed memory instead of faulting in fresh pages for every tensor
/// (`ikd_kernels::tune_process` turns its purging off).
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
    /// Take a run as far as it goes: start, or continue after any interruption, train, test;
    /// a finished run is left as it is.
    Run(Box<RunArgs>),
    /// Train a student on a category's defect-free images (then test it, unless --no-eval).
    Train(Box<TrainArgs>),
    /// Test a finished run on its category's test images: metrics.json and heat maps.
    Test(TestArgs),
    /// Run a finished run on any images: OK/NG decisions, scores, heat maps and masks.
    Predict(PredictArgs),
    /// Score any method's anomaly maps (MVTec AD evaluation layout) against the ground truth.
    Evaluate(EvaluateArgs),
    /// Write the report of finished runs: tables, ROC, PRO and training curves, a gallery.
    Report(ReportArgs),
    /// Serve finished runs over HTTP: OK/NG, scores, heat maps; batching, metrics.
    Serve(Box<serve::ServeArgs>),
    /// How far each run has come: empty, started, checkpointed, trained or tested.
    Status(StatusArgs),
    /// Write a SLURM job array that trains and tests many categories on a cluster, and its report job.
    Slurm(Box<SlurmArgs>),
    /// Write a finished run as one ONNX graph for onnxruntime, OpenVINO or TensorRT.
    Export(export::ExportArgs),
}

#[derive(Args)]
struct StatusArgs {
    /// Run folders.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
}

#[derive(Args)]
struct SlurmArgs {
    /// Folder to write the job scripts into (config.toml, train.sbatch, report.sbatch, submit.sh,
    /// logs/); on the cluster's shared file system.
    #[arg(long)]
    out: PathBuf,
    /// Folder holding the categories in MVTec AD layout (shared file system).
    #[arg(long, value_name = "DIR")]
    data_root: PathBuf,
    /// Categories to train, one array task each (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', required = true)]
    category: Vec<String>,
    /// Folder of the run folders (RUNS/<category>; shared file system).
    #[arg(long)]
    runs: PathBuf,
    /// The report folder the final job writes (default: RUNS/report).
    #[arg(long)]
    report: Option<PathBuf>,
    /// The paper's table (CSV) the report compares MVTec AD categories with.
    #[arg(long)]
    paper: Option<PathBuf>,
    /// The `ikd` binary the jobs run (default: this one).
    #[arg(long, value_name = "FILE")]
    ikd: Option<PathBuf>,
    /// Score test sets where only some defective images have a mask.
    #[arg(long)]
    allow_missing_masks: bool,
    #[command(flatten)]
    settings: TrainSettings,
    #[command(flatten)]
    sbatch: ikd_cli::slurm::SbatchOptions,
}

#[derive(Args)]
struct RunArgs {
    /// The run folder: made, continued or left as it is, as its state asks.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    data: DataSelection,
    #[command(flatten)]
    settings: TrainSettings,
    /// Test even when only some defective test images have a mask (pixel metrics over those
    /// that have one).
    #[arg(long)]
    allow_missing_masks: bool,
    #[command(flatten)]
    loader: LoaderArgs,
}

/// How the training loader reads.
#[derive(Args)]
struct LoaderArgs {
    /// Batches the loader decodes ahead of the training step.
    #[arg(long, value_name = "N", default_value_t = ikd::LoaderOptions::default().prefetch)]
    prefetch: usize,
    /// Decoded training images kept in memory between epochs, in MiB (the rest is decoded again
    /// each epoch).
    #[arg(long, value_name = "MIB", default_value_t = ikd::LoaderOptions::default().cache_bytes >> 20)]
    cache_mib: u64,
}

impl LoaderArgs {
    fn options(&self) -> ikd::LoaderOptions {
        ikd::LoaderOptions { prefetch: self.prefetch, cache_bytes: self.cache_mib << 20 }
    }
}

#[derive(Args)]
struct TrainArgs {
    /// The run directory to create (or continue with --resume).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    data: DataSelection,
    #[command(flatten)]
    settings: TrainSettings,
    /// Test even when only some defective test images have a mask (pixel metrics over those
    /// that have one).
    #[arg(long)]
    allow_missing_masks: bool,
    /// Continue the run in --out from its last checkpoint, with its saved settings.
    #[arg(long)]
    resume: bool,
    /// Do not test the run when training has finished.
    #[arg(long)]
    no_eval: bool,
    #[command(flatten)]
    loader: LoaderArgs,
}

#[derive(Args)]
struct TestArgs {
    /// The run directory.
    #[arg(long)]
    run: PathBuf,
    /// Read the dataset here instead of the run's data root.
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// Folder mode: test on these defect-free images instead of the run's test set.
    #[arg(long, value_name = "DIR", conflicts_with = "data_root")]
    normal_dir: Option<PathBuf>,
    /// Folder mode: defective test images.
    #[arg(long, value_name = "DIR", requires = "normal_dir")]
    abnormal_dir: Option<PathBuf>,
    /// Folder mode: masks of the defective images, named like them.
    #[arg(long, value_name = "DIR", requires = "abnormal_dir")]
    mask_dir: Option<PathBuf>,
    /// Also write 32-bit float TIFF maps in MVTec AD's evaluation layout under RUN/anomaly_maps.
    #[arg(long)]
    save_maps: bool,
    /// Score a test set where only some defective images have a mask (pixel metrics over those
    /// that have one); without it that is an error naming the images without one. A test set
    /// without any mask is scored at image level.
    #[arg(long)]
    allow_missing_masks: bool,
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
    /// Walk the input folders' subfolders too (outputs mirror them).
    #[arg(long)]
    recursive: bool,
    /// Replace outputs that exist (without it an existing output is an error and nothing is
    /// written).
    #[arg(long)]
    overwrite: bool,
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

fn train(args: TrainArgs, progress: bool) -> Result<ExitCode> {
    let config = if args.resume {
        args.settings.resolve_resume(&args.out, &args.data)?
    } else {
        let mut config = args.settings.resolve()?;
        args.data.apply(&mut config);
        DataSelection::check(&config)?;
        config
    };
    if !args.no_eval && !args.resume {
        // the test after training would refuse a partial set of masks: say so before training
        let policy = if args.allow_missing_masks {
            ikd_data::MaskPolicy::AllowMissing
        } else {
            ikd_data::MaskPolicy::AllOrNone
        };
        config.open_category(None, policy)?;
    }
    check_teacher_file(&config)?;
    let opts = train_options(args.resume, progress, &args.loader)?;
    let summary = ikd::train(&config, &args.out, opts).map_err(|e| match e {
        ikd::Error::RunState { path, msg } if msg.starts_with("already holds a run") => {
            anyhow::anyhow!(
                "{}: already holds a run: continue it with `ikd train --out {0} --resume` or \
                 `ikd run --out {0}`, or choose another --out",
                path.display()
            )
        }
        e => e.into(),
    })?;
    let again = format!("`ikd train --out {} --resume`", args.out.display());
    if let Some(code) = report_training(&summary, &again) {
        return Ok(code);
    }
    if !args.no_eval {
        test(
            TestArgs {
                run: args.out,
                data_root: None,
                normal_dir: None,
                abnormal_dir: None,
                mask_dir: None,
                save_maps: false,
                device: None,
                allow_missing_masks: args.allow_missing_masks,
            },
            progress,
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn check_teacher_file(config: &ikd::TrainConfig) -> Result<()> {
    if let TeacherWeights::File(p) = &config.teacher_weights {
        if !p.is_file() {
            bail!("{}: teacher weights file not found", p.display());
        }
    }
    Ok(())
}

fn train_options(resume: bool, progress: bool, loader: &LoaderArgs) -> Result<TrainOptions> {
    let stop = ikd_cli::stop_on_signals().context("installing the SIGINT/SIGTERM handlers")?;
    Ok(TrainOptions {
        resume,
        progress,
        stop: Some(stop),
        kernels: KernelPolicy::from_env(),
        loader: loader.options(),
    })
}

/// Says how training went; `Some(exit code)` when it stopped before its end (`again`: the
/// command that continues it).
fn report_training(summary: &ikd::TrainSummary, again: &str) -> Option<ExitCode> {
    if summary.interrupted {
        eprintln!(
            "interrupted after step {}: checkpoint written; continue with {again}",
            summary.steps
        );
        return Some(ExitCode::from(ikd_cli::EXIT_INTERRUPTED));
    }
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
            "stopped at step {} before the last epoch (checkpointed, no student yet): continue \
             with {again}",
            summary.steps
        );
        return Some(ExitCode::SUCCESS);
    }
    None
}

/// `ikd run`: what the run folder needs next, done ([`ikd::run`]).
fn run(args: RunArgs, progress: bool) -> Result<ExitCode> {
    let config = args.settings.resolve_for(&args.out, &args.data)?;
    check_teacher_file(&config)?;
    let dir = ikd::RunDir::new(&args.out);
    let found = dir.next_step();
    let state = serde_json::to_value(dir.state())?;
    let doing = match found {
        ikd::NextStep::Start => "starting it",
        ikd::NextStep::Restart => "its start never reached a checkpoint: starting it again",
        ikd::NextStep::Resume => "resuming it",
        ikd::NextStep::Test => "testing it",
        ikd::NextStep::Nothing => "finished",
    };
    println!("{}: {} run: {doing}", args.out.display(), state.as_str().unwrap_or_default());
    let opts = ikd::RunOptions {
        train: train_options(false, progress, &args.loader)?,
        test: TestOptions {
            progress,
            kernels: KernelPolicy::from_env(),
            allow_missing_masks: args.allow_missing_masks,
            ..TestOptions::default()
        },
    };
    let report = ikd::run(&config, &args.out, &opts)?;
    if report.found == ikd::NextStep::Nothing {
        println!("{}: trained and tested before: nothing to do", args.out.display());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(summary) = &report.training {
        let again = format!("`ikd run --out {}`", args.out.display());
        if let Some(code) = report_training(summary, &again) {
            return Ok(code);
        }
    }
    if let Some(m) = &report.metrics {
        print_metrics(m);
        println!("wrote {}", dir.metrics().display());
    }
    Ok(ExitCode::SUCCESS)
}

fn test(args: TestArgs, progress: bool) -> Result<()> {
    let opts = TestOptions {
        data_root: args.data_root,
        device: args.device,
        save_maps: args.save_maps,
        progress,
        kernels: KernelPolicy::from_env(),
        allow_missing_masks: args.allow_missing_masks,
        folder: DataSelection {
            normal_dir: args.normal_dir,
            abnormal_dir: args.abnormal_dir,
            mask_dir: args.mask_dir,
            ..DataSelection::default()
        }
        .folder(),
        ..TestOptions::default()
    };
    let m = ikd::test_run(&args.run, &opts)?;
    print_metrics(&m);
    println!("wrote {}", args.run.join(ikd::files::METRICS).display());
    Ok(())
}

fn print_metrics(m: &ikd::TestMetrics) {
    if !m.pixel_level {
        println!(
            "{}: image AUROC {:.4} (no defective test image has a mask: image-level metrics only)",
            m.category, m.image_auroc
        );
    } else {
        println!(
            "{}: pixel AUROC {:.4}  AU-PRO {:.4}  PRO (IKD, 200 thr.) {:.4}  image AUROC {:.4}  AP {:.4}  F1-max {:.4} at {:.5}",
            m.category, m.pixel_auroc, m.au_pro, m.pro_ikd200, m.image_auroc, m.pixel_ap, m.f1_max, m.threshold
        );
        if m.images_without_mask > 0 {
            println!(
                "  {} defective test images without a mask: left out of the pixel metrics",
                m.images_without_mask
            );
        }
    }
    if let (Some(ap), Some(f1), Some(t)) = (m.image_ap, m.image_f1_max, m.image_threshold) {
        println!("  images: AP {ap:.4}  F1-max {f1:.4}  OK/NG threshold {t:.5}");
    }
    for (defect, d) in &m.per_defect {
        println!("  {defect:<24} {:>4} images  pixel AUROC {:.4}", d.images, d.pixel_auroc);
    }
}

fn predict(args: PredictArgs, progress: bool) -> Result<ExitCode> {
    let opts = ikd::PredictOptions {
        recursive: args.recursive,
        overwrite: args.overwrite,
        pixel_threshold: args.threshold,
        device: args.device,
        kernels: KernelPolicy::from_env(),
        progress,
    };
    let s = ikd::predict(&args.run, &args.inputs, &args.out, &opts).map_err(|e| match e {
        ikd::Error::BadFile { path, msg } if msg.starts_with("exists") => anyhow::anyhow!(
            "{}: exists: pass --overwrite to replace the outputs, or choose another --out",
            path.display()
        ),
        e => e.into(),
    })?;
    for p in &s.images {
        let verdict = match p.anomalous {
            Some(true) => format!("NG\t{:.3}", p.normalized.unwrap_or(f64::NAN)),
            Some(false) => format!("OK\t{:.3}", p.normalized.unwrap_or(f64::NAN)),
            None => "-\t-".to_string(),
        };
        println!("{}\t{:.5}\t{verdict}", p.input.display(), p.score);
    }
    for f in &s.skipped {
        eprintln!("skipped {}: not an image", f.display());
    }
    if s.decision.is_none() {
        eprintln!(
            "{} was never tested: raw scores only, no OK/NG decision (run `ikd test --run {}`)",
            args.run.display(),
            args.run.display()
        );
    }
    println!(
        "{} images scored, {} skipped, {} failed: {}",
        s.images.len(),
        s.skipped.len(),
        s.failed.len(),
        args.out.join("predictions.csv").display()
    );
    if !s.failed.is_empty() {
        for (path, why) in &s.failed {
            eprintln!(
                "error: {why}",
                why = if why.contains(&path.display().to_string()) {
                    why.clone()
                } else {
                    format!("{}: {why}", path.display())
                }
            );
        }
        eprintln!(
            "error: {} of {} images could not be read",
            s.failed.len(),
            s.failed.len() + s.images.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn evaluate(args: EvaluateArgs) -> Result<()> {
    let results = ikd::evaluate_maps(&args.maps, &args.data_root, &args.category)?;
    for m in &results {
        print_metrics(m);
    }
    if let Some(path) = args.json {
        let json = serde_json::to_string_pretty(&results)?;
        ikd_io::atomic_write(&path, json.as_bytes())?;
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

/// Log lines on stderr, at RUST_LOG's level (default: warnings; a server's: info).
fn init_logs(command: &Command) {
    let (level, json) = match command {
        Command::Serve(a) => ("info", a.log_format == serve::LogFormat::Json),
        _ => ("warn", false),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        logs.json().with_current_span(true).with_span_list(false).init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
}

fn status(args: StatusArgs) -> Result<()> {
    for run in &args.runs {
        if run.exists() && !run.is_dir() {
            bail!("{}: not a folder", run.display());
        }
        let state = serde_json::to_value(ikd::RunDir::new(run).state())?;
        println!("{}\t{}", state.as_str().unwrap_or_default(), run.display());
    }
    Ok(())
}

fn slurm(args: SlurmArgs) -> Result<()> {
    if !args.data_root.is_dir() {
        bail!("{}: data root not found", args.data_root.display());
    }
    let ikd = match args.ikd {
        Some(p) => p,
        None => std::env::current_exe().context("finding this ikd binary")?,
    };
    let report = args.report.unwrap_or_else(|| args.runs.join("report"));
    let plan = ikd_cli::slurm::Plan {
        ikd,
        data_root: args.data_root,
        categories: args.category,
        runs: args.runs,
        report,
        paper: args.paper,
        config: args.settings.resolve()?,
        allow_missing_masks: args.allow_missing_masks,
        sbatch: args.sbatch,
    };
    let w = ikd_cli::slurm::write(&plan, &args.out)?;
    println!(
        "{} categories: submit with `bash {}` (again after a failure: finished ones are skipped)",
        plan.categories.len(),
        w.submit.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    ikd_kernels::tune_process();
    let cli = Cli::parse();
    init_logs(&cli.command);
    let progress = !cli.quiet;
    let result = match cli.command {
        Command::Run(a) => run(*a, progress),
        Command::Train(a) => train(*a, progress),
        Command::Test(a) => test(a, progress).map(|()| ExitCode::SUCCESS),
        Command::Predict(a) => predict(a, progress),
        Command::Evaluate(a) => evaluate(a).map(|()| ExitCode::SUCCESS),
        Command::Report(a) => report(a).map(|()| ExitCode::SUCCESS),
        Command::Serve(a) => serve::serve(*a),
        Command::Status(a) => status(a).map(|()| ExitCode::SUCCESS),
        Command::Slurm(a) => slurm(*a).map(|()| ExitCode::SUCCESS),
        Command::Export(a) => export::export(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", ikd_cli::error_line(&e));
            ExitCode::FAILURE
        }
    }
}
