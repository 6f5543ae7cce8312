//! Project tasks of the ikd workspace (the cargo-xtask pattern): `cargo xtask <task>`.
//!
//! - `demo`: the whole pipeline offline on the synthetic dataset, ending with a report.
//! - `reproduce`: MVTec AD with the paper's settings (download, weights, train, test, report).
//! - `download`, `weights`: the two fetches on their own.
//! - `report`: the report from finished runs.
//! - `speed`: training images/s on a synthetic category, the steps alone and with data loading.
//! - `loadtest`: `ikd serve` under bounded load on 127.0.0.1, beside `Predictor::score_batch`.
//! - `test`: the whole test suite, with what it needs set up first; `lint`: rustfmt and clippy.
//! - `cuda-check`: clippy with `--features cuda`, NVIDIA's compiler installed from PyPI first.
//! - `gpu-bundle`: the folder for the lent GPU machine; `gpu-run`: the check it runs there.
//!
//! Each task is a module with one `run` function.

mod cuda;
mod demo;
mod download;
mod gpu_bundle;
mod gpu_run;
mod loadtest;
mod package;
mod pipeline;
mod python;
mod report;
mod reproduce;
mod speed;
mod test;
mod util;
mod weights;

use clap::{Parser, Subcommand};

/// mimalloc reuses freed memory instead of faulting in fresh pages for every tensor
/// (`ikd_kernels::tune_process` turns its purging off).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// ikd's project tasks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// The whole pipeline offline on the synthetic dataset (no network, no GPU), ending with a report.
    Demo(demo::DemoArgs),
    /// Reproduces the paper's MVTec AD table: dataset, weights, training, testing, report.
    Reproduce(Box<reproduce::ReproduceArgs>),
    /// Downloads, verifies and extracts MVTec AD (or checks an existing copy).
    Download(download::DownloadArgs),
    /// Fetches timm's ImageNet weights of the teacher into the Hugging Face cache.
    Weights(weights::WeightsArgs),
    /// Writes the report of the finished runs in a folder.
    Report(report::ReportArgs),
    /// Training throughput on a synthetic category: the steps alone and with data loading.
    Speed(speed::SpeedArgs),
    /// `ikd serve` under bounded load on 127.0.0.1: 1, 4, 16 clients, overload; beside score_batch.
    Loadtest(loadtest::LoadtestArgs),
    /// The whole test suite: installs what the tests need when it can, builds, runs every test.
    Test(test::TestArgs),
    /// Every library crate packaged as crates.io would take it (`cargo package`); the
    /// verification build and rustdoc (warnings denied) for the crates without candle (all with
    /// `--verify-all`).
    Package(package::PackageArgs),
    /// rustfmt and clippy (warnings denied), as CI runs them.
    Lint,
    /// The `cuda` feature compiled and linted without a GPU: NVIDIA's compiler from PyPI, then
    /// clippy on every target with `--features cuda` (warnings denied).
    CudaCheck(cuda::CudaCheckArgs),
    /// The folder for the lent GPU machine (no Rust there): CUDA binaries, parity fixtures,
    /// PyTorch's bench and run.sh, under 64 MiB.
    GpuBundle(gpu_bundle::GpuBundleArgs),
    /// The CUDA check itself (run.sh runs it on the GPU machine): parity with PyTorch and the
    /// CPU, hrnet_w32 speed, a synthetic category at the paper's settings; one JSON.
    GpuRun(gpu_run::GpuRunArgs),
}

fn main() {
    ikd_kernels::tune_process();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Demo(a) => demo::run(&a),
        Task::Reproduce(a) => reproduce::run(&a),
        Task::Download(a) => download::run(&a),
        Task::Weights(a) => weights::run(&a),
        Task::Report(a) => report::run(&a).map(|_| ()),
        Task::Speed(a) => speed::run(&a),
        Task::Loadtest(a) => loadtest::run(&a),
        Task::Test(a) => test::run(&a),
        Task::Package(a) => package::run(&a),
        Task::Lint => test::lint(),
        Task::CudaCheck(a) => cuda::run(&a),
        Task::GpuBundle(a) => gpu_bundle::run(&a),
        Task::GpuRun(a) => gpu_run::run(&a),
    };
    if let Err(e) = result {
        eprintln!("error: {}", ikd_cli::error_line(&e));
        std::process::exit(1);
    }
}
