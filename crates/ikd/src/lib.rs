//! The IKD engine: everything between the crates and the `ikd` command.
//!
//! [Informative Knowledge Distillation for Image Anomaly Segmentation](https://doi.org/10.1016/j.knosys.2022.108846)
//! (Cao et al., Knowledge-Based Systems 2022) trains a student HRNet to imitate a frozen,
//! ImageNet-pretrained teacher on defect-free images; where the two disagree, the image is anomalous.
//!
//! Read top-down: [`TrainConfig`] is the recipe (`recipe`), [`RunDir`] the run folder (its
//! files, checkpoint format, state and resume rule), [`train`] the training loop,
//! [`test_run`] the test, [`run`] the lifecycle that chooses between them, [`Distiller`] the
//! teacher/student pair, and [`Predictor`] a finished run scoring images.
//!
//! A run made by `ikd run` (trained, then tested: the OK/NG threshold) on a production line:
//!
//! ```no_run
//! let predictor = ikd::Predictor::open("runs/bottle", &candle_core::Device::Cpu)?;
//! for path in ["line/0001.png", "line/0002.png"] {
//!     let image = ikd_data::load_image(path.as_ref())?;
//!     let p = predictor.score(&image)?; // map at the image's size, score, decision, mask
//!     let verdict = if p.anomalous == Some(true) { "NG" } else { "OK" };
//!     let flagged = 100.0 * p.defect_fraction.unwrap_or(0.0);
//!     println!("{path}: {verdict} (score {:.3}, {flagged:.1}% of the pixels flagged)", p.score);
//! }
//! # Ok::<(), ikd::Error>(())
//! ```

mod distiller;
mod error;
mod evaluate;
mod fsutil;
pub mod init;
mod lifecycle;
pub mod maps;
pub mod optim;
mod predict;
mod predictor;
mod recipe;
mod run_dir;
mod teacher;
mod test_metrics;
mod train;
pub mod viz;

pub use distiller::{
    teacher_weights_file, Backbone, Distiller, StepStats, TeacherWeights, TrainingState,
};
pub use error::{Error, Result};
pub use evaluate::{evaluate_maps, test_run, TestOptions};
pub use ikd_data::LoaderOptions;
pub use ikd_kernels::KernelPolicy;
pub use lifecycle::{run, RunOptions, RunReport};
pub use predict::{expand_inputs, predict, Inputs, PredictOptions, PredictSummary, PredictedFile};
pub use predictor::{Prediction, Predictor};
pub use recipe::{parse_device, resolve_backbone, TrainConfig};
pub use run_dir::{checkpoint, files, LogEntry, NextStep, RunDir, RunState};
pub use teacher::TeacherIdentity;
pub use test_metrics::{Decision, DefectMetrics, ImageResult, MachineInfo, TestMetrics};
pub use train::{train, TrainOptions, TrainSummary};
