//! The IKD engine: everything between the crates and the `ikd` command.
//!
//! [Informative Knowledge Distillation for Image Anomaly Segmentation](https://doi.org/10.1016/j.knosys.2022.108846)
//! (Cao et al., Knowledge-Based Systems 2022) trains a student HRNet to imitate a frozen,
//! ImageNet-pretrained teacher on defect-free images; where the two disagree, the image is anomalous.

pub mod checkpoint;
mod distiller;
mod error;
mod evaluate;
mod fsutil;
pub mod init;
pub mod maps;
pub mod optim;
mod predict;
mod progress;
mod train;
pub mod viz;

pub use distiller::{teacher_weights_file, Backbone, Distiller, StepStats, TeacherWeights};
pub use error::{Error, Result};
pub use evaluate::{evaluate_maps, test_run, DefectMetrics, ImageResult, TestMetrics, TestOptions};
pub use fsutil::{atomic_write, atomic_write_with};
pub use predict::{expand_inputs, predict, PredictSummary, Prediction};
pub use train::{
    files, parse_device, resolve_backbone, train, LogEntry, TrainConfig, TrainOptions, TrainSummary,
};

/// Sets candle's CPU threading to what works best for HRNet training on small machines, unless the
/// user set it: `RAYON_NUM_THREADS` to the number of cores (otherwise candle counts them again on
/// every matrix product) and `CANDLE_BARRIER_POOL_SPIN_LIMIT` to 200 (candle's workers otherwise
/// spin for long while waiting for each other; measured on the 2-core machine under load: a
/// hrnet_w18_small 128² training step went from 1.11 s to 0.71 s). Call it first thing in `main`,
/// before any thread is started.
///
/// ```
/// ikd::tune_cpu_threads();
/// assert!(std::env::var("RAYON_NUM_THREADS").is_ok());
/// ```
pub fn tune_cpu_threads() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "200");
    }
}
