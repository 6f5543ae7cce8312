//! Training checkpoints: one safetensors file holding the student, the optimiser's moments and,
//! in its metadata, the position in the run and the AHSM margins. Written atomically.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use ikd_distill::IkdLossState;

use crate::{Error, Result};

const META_KEY: &str = "ikd_checkpoint";

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
    loss_state: IkdLossState,
}

/// A checkpoint in memory.
///
/// ```
/// use std::collections::HashMap;
/// use ikd::checkpoint::{Checkpoint, Position};
/// let ck = Checkpoint {
///     tensors: HashMap::new(),
///     position: Position { step: 0, epoch: 0, batch: 0 },
///     loss_state: ikd_distill::IkdLossState::new(&ikd_distill::IkdLossConfig::paper()),
/// };
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("checkpoint.safetensors");
/// ck.save(&p).unwrap();
/// let back = Checkpoint::load(&p, &candle_core::Device::Cpu).unwrap();
/// assert_eq!(back.position, ck.position);
/// ```
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Named tensors (see [`crate::Distiller::training_state`]).
    pub tensors: HashMap<String, Tensor>,
    /// Where training stands.
    pub position: Position,
    /// The AHSM margins.
    pub loss_state: IkdLossState,
}

impl Checkpoint {
    /// Writes the checkpoint atomically: a crash or a full disk leaves the previous one intact.
    ///
    /// ```no_run
    /// # let ck: ikd::checkpoint::Checkpoint = unimplemented!();
    /// ck.save("runs/x/checkpoint.safetensors".as_ref())?;
    /// # Ok::<(), ikd::Error>(())
    /// ```
    pub fn save(&self, path: &Path) -> Result<()> {
        let meta = Meta { position: self.position, loss_state: self.loss_state.clone() };
        let json =
            serde_json::to_string(&meta).map_err(|e| Error::bad_file(path, e.to_string()))?;
        let info = Some(HashMap::from([(META_KEY.to_string(), json)]));
        let mut tensors: Vec<(&String, &Tensor)> = self.tensors.iter().collect();
        tensors.sort_by(|a, b| a.0.cmp(b.0));
        let cpu: Vec<(String, Tensor)> = tensors
            .into_iter()
            .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?)))
            .collect::<Result<_>>()?;
        let bytes = safetensors::tensor::serialize(cpu, info)
            .map_err(|e| Error::bad_file(path, e.to_string()))?;
        Ok(ikd_io::atomic_write(path, &bytes)?)
    }

    /// Reads a checkpoint written by [`Checkpoint::save`], tensors onto `device`.
    ///
    /// ```no_run
    /// let ck = ikd::checkpoint::Checkpoint::load("runs/x/checkpoint.safetensors".as_ref(), &candle_core::Device::Cpu)?;
    /// println!("step {}", ck.position.step);
    /// # Ok::<(), ikd::Error>(())
    /// ```
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
        Ok(Self { tensors, position: meta.position, loss_state: meta.loss_state })
    }
}
