//! # ikd-distill
//!
//! The losses of *Informative Knowledge Distillation for Image Anomaly Segmentation* (Cao, Wan,
//! Shen, Gao; Knowledge-Based Systems 248, 2022, <https://doi.org/10.1016/j.knosys.2022.108846>),
//! on [candle](https://github.com/huggingface/candle), and the anomaly map that goes with them.
//!
//! - [`IkdLoss`]: the IKD loss exactly as published — per-pixel L2-normalised features, adaptive
//!   hard-sample mining (AHSM) with one margin per level carried across steps ([`IkdLossState`],
//!   serialisable for checkpoints), pixel-similarity and context-similarity losses, weighted over
//!   levels. Gradients reach the student only.
//! - [`context_similarity`]: the context-similarity loss computed with C×C matrices instead of
//!   the K×K Gram matrices of the published code (same value and gradient, O(K·C²) time, O(C²)
//!   extra memory).
//! - [`IkdLossConfig`]: the paper's settings and the ablations (no context loss, no mining, and a
//!   plain STPM-style mean-distance baseline).
//! - [`anomaly_map`] / [`pixel_distance`] / [`l2_normalize`]: inference uses the same
//!   normalisation and distance code as training.
//!
//! Parity with the published PyTorch loss is tested on the fixtures in
//! `../shared/fixtures/loss/` (loss, margins and student gradients, step after step).
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use ikd_distill::{anomaly_map, IkdLoss, IkdLossConfig};
//!
//! let dev = Device::Cpu;
//! let teacher: Vec<Tensor> = (0..4)
//!     .map(|_| Tensor::randn(0f32, 1.0, (2, 32, 16, 16), &dev))
//!     .collect::<Result<_, _>>()?;
//! let student: Vec<Var> = (0..4)
//!     .map(|_| Var::randn(0f32, 1.0, (2, 32, 16, 16), &dev))
//!     .collect::<Result<_, _>>()?;
//! let student_maps: Vec<Tensor> = student.iter().map(|v| v.as_tensor().clone()).collect();
//!
//! // Training: one loss per run, its state checkpointed with the model.
//! let mut loss = IkdLoss::new(IkdLossConfig::paper())?;
//! let out = loss.forward(&teacher, &student_maps)?;
//! let grads = out.total.backward()?;
//! assert!(grads.get(&student[1]).is_some());
//! let checkpoint = serde_json::to_string(loss.state())?;
//! # let _ = checkpoint;
//!
//! // Testing: the anomaly map at feature resolution, (N, H, W).
//! let map = anomaly_map(&teacher, &student_maps, &loss.config().levels)?;
//! assert_eq!(map.dims(), &[2, 16, 16]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod error;
mod loss;
mod ops;

pub use config::IkdLossConfig;
pub use error::{DistillError, Result};
pub use loss::{IkdLoss, IkdLossState, LossOutput};
pub use ops::{anomaly_map, context_similarity, l2_normalize, pixel_distance, NORM_EPS};
