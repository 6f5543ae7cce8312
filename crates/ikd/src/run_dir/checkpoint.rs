//! The checkpoint format: one safetensors file holding the student (`student.<name>`), AdamW's
//! moments (`optim.<name>`) and, in its metadata (`ikd_checkpoint`), the position in the run
//! and the AHSM margins. Written atomically.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::{Error, Result, TrainingState};

const META_KEY: &str = "ikd_checkpoint";
const STUDENT: &str = "student.";
const OPTIM: &str = "optim.";

/// Where training stands: what a checkpoint records besides the tensors.
///
/// ```
/// let p = ikd::checkpoint::Position { step: 10, epoch: 2, batch: 0 };
/// assert_eq!(p.step, 10);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// Optimiser steps taken.
    pub step: u64,
    /// The epoch to continue in (0-based).
    pub epoch: u64,
    /// The batch of that epoch to continue with.
    pub batch: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    position: Position,
    loss_state: ikd_distill::IkdLossState,
}

/// A checkpoint in memory: the training state and where it stands.
///
/// ```
/// use std::collections::HashMap;
/// use ikd::checkpoint::{Checkpoint, Position};
/// let t = candle_core::Tensor::new(&[1f32, 2.0], &candle_core::Device::Cpu)?;
/// let ck = Checkpoint {
///     state: ikd::TrainingState {
///         student: HashMap::from([("conv1.weight".to_string(), t.clone())]),
///         optim: HashMap::from([("m.conv1.weight".to_string(), t)]),
///         step: 3,
///         loss_state: ikd_distill::IkdLossState::new(&ikd_distill::IkdLossConfig::paper()),
///     },
///     position: Position { step: 3, epoch: 1, batch: 0 },
/// };
/// let dir = tempfile::tempdir()?;
/// let p = dir.path().join("checkpoint.safetensors");
/// ck.save(&p)?;
/// let back = Checkpoint::load(&p, &candle_core::Device::Cpu)?;
/// assert_eq!((back.position, back.state.step), (ck.position, 3));
/// assert_eq!(back.state.optim["m.conv1.weight"].to_vec1::<f32>()?, [1.0, 2.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The student, AdamW's moments and the margins ([`crate::Distiller::training_state`]).
    pub state: TrainingState,
    /// Where training stands (its `step` is the state's).
    pub position: Position,
}

impl Checkpoint {
    /// Writes the checkpoint atomically: a crash or a full disk leaves the previous one intact.
    pub fn save(&self, path: &Path) -> Result<()> {
        let meta = Meta { position: self.position, loss_state: self.state.loss_state.clone() };
        let json = serde_json::to_string(&meta)
            .map_err(|e| Error::Internal(format!("checkpoint metadata: {e}")))?;
        let info = Some(HashMap::from([(META_KEY.to_string(), json)]));
        let named = self.state.student.iter().map(|(k, t)| (format!("{STUDENT}{k}"), t));
        let named = named.chain(self.state.optim.iter().map(|(k, t)| (format!("{OPTIM}{k}"), t)));
        let mut tensors: Vec<(String, &Tensor)> = named.collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let cpu: Vec<(String, Tensor)> = tensors
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_device(&Device::Cpu)?)))
            .collect::<Result<_>>()?;
        let bytes = safetensors::tensor::serialize(cpu, info)
            .map_err(|e| Error::Internal(format!("serialising a checkpoint: {e}")))?;
        crate::run_dir::test_hooks::before_checkpoint_write();
        Ok(ikd_io::atomic_write(path, &bytes)?)
    }

    /// Reads a checkpoint written by [`Checkpoint::save`], tensors onto `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| Error::bad_file(path, format!("not a safetensors file: {e}")))?;
        let json =
            header.metadata().as_ref().and_then(|m| m.get(META_KEY)).ok_or_else(|| {
                Error::bad_file(path, "not an ikd checkpoint (no metadata)".into())
            })?;
        let meta: Meta = serde_json::from_str(json)
            .map_err(|e| Error::bad_file(path, format!("unreadable checkpoint metadata: {e}")))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, device)
            .map_err(|e| Error::bad_file(path, e.to_string()))?;
        let (mut student, mut optim) = (HashMap::new(), HashMap::new());
        for (name, t) in tensors {
            if let Some(n) = name.strip_prefix(STUDENT) {
                student.insert(n.to_string(), t);
            } else if let Some(n) = name.strip_prefix(OPTIM) {
                optim.insert(n.to_string(), t);
            } else {
                return Err(Error::bad_file(path, format!("unexpected tensor `{name}`")));
            }
        }
        let state =
            TrainingState { student, optim, step: meta.position.step, loss_state: meta.loss_state };
        Ok(Self { state, position: meta.position })
    }
}
