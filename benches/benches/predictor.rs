//! Bench of the inference API (`ikd::Predictor::score_batch`): a finished hrnet_w32 run at 256²
//! (random teacher, one training step: the weights do not change the work) scoring a batch of 8
//! images of 256×256 — preprocessing, teacher and student eval forwards, the anomaly map, the map
//! at the image's size, decisions and masks. PyTorch's counterpart, the two eval forwards and the
//! anomaly map of the same batch: `python benches/pytorch/hrnet_bench.py --predict`. The run is
//! also exported (`ikd export`) to `target/tmp/predictor_hrnet_w32_256.onnx`, which
//! `benches/onnx/runtimes_bench.py` times on onnxruntime and OpenVINO; `benches/onnx/run.sh`
//! runs all four in one go.
//!
//! Run: `cargo bench -p ikd-benches --bench predictor`

use std::hint::black_box;
use std::time::Duration;

use candle_core::Device;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use ikd::{TeacherWeights, TestOptions, TrainConfig, TrainOptions};
use ikd_data::synthetic::{generate, SyntheticConfig, Texture};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 8;

fn predictor(c: &mut Criterion) {
    ikd_kernels::tune_process(); // as the `ikd` binary does
    let dir = tempfile::tempdir().expect("scratch folder");
    let cfg = SyntheticConfig {
        categories: vec![Texture::Carpet],
        image_size: 256,
        n_train: 2,
        n_test_good: 4,
        n_test_defect: 4,
        seed: 0,
    };
    generate(&cfg, dir.path().join("data")).expect("synthetic data");
    let config = TrainConfig {
        data_root: dir.path().join("data"),
        category: "carpet".into(),
        backbone: "hrnet_w32".into(),
        teacher_weights: TeacherWeights::Random,
        epochs: 1,
        ..TrainConfig::default()
    };
    let run = dir.path().join("run");
    ikd::train(&config, &run, TrainOptions::default()).expect("training");
    ikd::test_run(&run, &TestOptions { heatmaps: false, ..TestOptions::default() }).expect("test");
    let predictor = ikd::Predictor::open(&run, &Device::Cpu)
        .expect("predictor")
        .with_kernel_policy(ikd::KernelPolicy::from_env());
    // the same run as one ONNX graph, for onnxruntime and OpenVINO (benches/onnx)
    let onnx =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("predictor_hrnet_w32_256.onnx");
    ikd_export::export(&run, &onnx, &ikd_export::ExportOptions::default()).expect("export");
    println!("the run as ONNX: {}", onnx.display());
    let test = dir.path().join("data/carpet/test");
    let mut paths: Vec<_> = walk(&test);
    paths.sort();
    let images: Vec<_> = paths
        .iter()
        .cycle()
        .take(BATCH)
        .map(|p| ikd_data::load_image(p).expect("test image"))
        .collect();

    let path = ikd::KernelPolicy::from_env().path();
    println!("kernel path: {path}, CPU: {}", ikd_kernels::cpu_model());
    let mut group = c.benchmark_group("predictor/hrnet_w32/256");
    group.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_secs(2));
    group.bench_function(format!("b{BATCH}/score_batch"), |b| {
        b.iter(|| black_box(predictor.score_batch(&images).expect("scores")))
    });
    group.finish();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("test folder") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

criterion_group!(benches, predictor);
criterion_main!(benches);
