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
mod teacher;
mod train;
pub mod viz;

pub use distiller::{teacher_weights_file, Backbone, Distiller, StepStats, TeacherWeights};
pub use error::{Error, Result};
pub use evaluate::{
    evaluate_maps, test_run, Decision, DefectMetrics, ImageResult, TestMetrics, TestOptions,
};
pub use ikd_kernels::KernelPolicy;
pub use predict::{expand_inputs, predict, PredictSummary, Prediction};
pub use teacher::TeacherIdentity;
pub use train::{
    files, parse_device, resolve_backbone, train, LogEntry, TrainConfig, TrainOptions, TrainSummary,
};
