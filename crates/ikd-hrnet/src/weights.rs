//! Weight I/O in timm's key layout.
//!
//! A model is built into a [`VarMap`] (random init), then [`load_timm`] overwrites every variable
//! with the checkpoint tensor of the same name. The classification head (`incre_modules`,
//! `downsamp_modules`, `final_layer`, `classifier`) and `num_batches_tracked` counters (I64) are
//! skipped; a missing, wrongly shaped or unexpected tensor is an error naming it. Tensors are
//! converted to the variables' dtype. [`save_safetensors`] writes a `VarMap` back under the same
//! names (plus `num_batches_tracked` counters), atomically, so checkpoints are interchangeable
//! with timm's.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use crate::{Error, HrNet, HrNetConfig, Result};

/// Top-level module names of timm's classification head, which the backbone does not build.
pub const HEAD_PREFIXES: [&str; 4] =
    ["incre_modules", "downsamp_modules", "final_layer", "classifier"];

/// Whether a checkpoint key is skipped when loading: the classification head or a BatchNorm
/// `num_batches_tracked` counter.
///
/// ```
/// use ikd_hrnet::is_skipped_key;
/// assert!(is_skipped_key("classifier.bias"));
/// assert!(is_skipped_key("incre_modules.0.0.conv1.weight"));
/// assert!(is_skipped_key("bn1.num_batches_tracked"));
/// assert!(!is_skipped_key("stage4.0.fuse_layers.3.0.0.0.weight"));
/// ```
pub fn is_skipped_key(name: &str) -> bool {
    let top = name.split('.').next().unwrap_or_default();
    HEAD_PREFIXES.contains(&top) || name.ends_with("num_batches_tracked")
}

/// Whether a variable name is a BatchNorm running statistic (not trained by gradient descent).
///
/// ```
/// assert!(ikd_hrnet::is_running_stat("bn1.running_var"));
/// assert!(!ikd_hrnet::is_running_stat("bn1.weight"));
/// ```
pub fn is_running_stat(name: &str) -> bool {
    name.ends_with(".running_mean")
        || name.ends_with(".running_var")
        || name == "running_mean"
        || name == "running_var"
}

/// The trainable variables of a `VarMap`: all of them except BatchNorm running statistics,
/// sorted by name (give these to the optimiser).
///
/// ```
/// use candle_core::{DType, Device};
/// use candle_nn::{VarBuilder, VarMap};
/// let varmap = VarMap::new();
/// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
/// let _bn = ikd_hrnet::BatchNorm2d::new(4, vb.pp("bn1"))?;
/// assert_eq!(varmap.all_vars().len(), 4);
/// assert_eq!(ikd_hrnet::trainable_vars(&varmap).len(), 2);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn trainable_vars(varmap: &VarMap) -> Vec<Var> {
    named_vars(varmap).into_iter().filter(|(n, _)| !is_running_stat(n)).map(|(_, v)| v).collect()
}

/// All variables of a `VarMap` with their names, sorted by name.
///
/// ```
/// # use candle_core::{DType, Device};
/// # use candle_nn::{VarBuilder, VarMap};
/// let varmap = VarMap::new();
/// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
/// let _bn = ikd_hrnet::BatchNorm2d::new(4, vb.pp("bn1"))?;
/// let names: Vec<String> = ikd_hrnet::named_vars(&varmap).into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.weight"]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn named_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
    let sorted: BTreeMap<_, _> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    sorted.into_iter().collect()
}

/// What [`load_timm`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Variables set from the checkpoint.
    pub loaded: usize,
    /// Checkpoint keys skipped (head and `num_batches_tracked`).
    pub skipped: usize,
}

/// Fills every variable of `varmap` from the timm-layout safetensors file at `path` (a timm
/// checkpoint or a file written by [`save_safetensors`]).
///
/// Errors: a variable with no tensor in the file ([`Error::MissingTensor`]), a tensor whose
/// shape differs ([`Error::ShapeMismatch`], naming both shapes), or non-head tensors the model
/// does not have ([`Error::UnexpectedTensors`], i.e. the file is for another configuration).
///
/// ```
/// use candle_core::{DType, Device};
/// use candle_nn::{VarBuilder, VarMap};
/// use ikd_hrnet::{HrNet, HrNetConfig};
/// let dir = std::env::temp_dir().join(format!("ikd-hrnet-doc-load-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("student.safetensors");
/// let cfg = HrNetConfig::w18_small();
/// let a = VarMap::new();
/// HrNet::new(&cfg, VarBuilder::from_varmap(&a, DType::F32, &Device::Cpu))?;
/// ikd_hrnet::save_safetensors(&a, &path)?;
/// let b = VarMap::new();
/// HrNet::new(&cfg, VarBuilder::from_varmap(&b, DType::F32, &Device::Cpu))?;
/// let report = ikd_hrnet::load_timm(&b, &path)?;
/// assert_eq!(report.loaded, a.all_vars().len());
/// std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_timm(varmap: &VarMap, path: impl AsRef<Path>) -> Result<LoadReport> {
    let path = path.as_ref();
    let tensors = read_safetensors(path)?;
    load_timm_tensors(varmap, &tensors, &path.display().to_string())
}

/// Like [`load_timm`] for tensors already in memory; `origin` names them in errors.
///
/// ```
/// use std::collections::HashMap;
/// use candle_core::{DType, Device, Tensor};
/// use candle_nn::{VarBuilder, VarMap};
/// let varmap = VarMap::new();
/// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
/// let _bn = ikd_hrnet::BatchNorm2d::new(2, vb.pp("bn1"))?;
/// let mut t = HashMap::new();
/// for k in ["weight", "bias", "running_mean", "running_var"] {
///     t.insert(format!("bn1.{k}"), Tensor::ones(2, DType::F64, &Device::Cpu)?);
/// }
/// t.insert("classifier.bias".into(), Tensor::zeros(10, DType::F32, &Device::Cpu)?);
/// let r = ikd_hrnet::load_timm_tensors(&varmap, &t, "memory")?;
/// assert_eq!((r.loaded, r.skipped), (4, 1));
/// t.insert("bn1.bias".into(), Tensor::ones(3, DType::F32, &Device::Cpu)?);
/// let err = ikd_hrnet::load_timm_tensors(&varmap, &t, "memory").unwrap_err().to_string();
/// assert!(err.contains("bn1.bias") && err.contains("[3]") && err.contains("[2]"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_timm_tensors(
    varmap: &VarMap,
    tensors: &HashMap<String, Tensor>,
    origin: &str,
) -> Result<LoadReport> {
    let vars = named_vars(varmap);
    // Check everything before touching any variable, so a failed load leaves the map unchanged.
    let mut plan = Vec::with_capacity(vars.len());
    for (name, var) in &vars {
        let expected = var.dims().to_vec();
        let Some(t) = tensors.get(name) else {
            return Err(Error::MissingTensor { name: name.clone(), expected, file: origin.into() });
        };
        if t.dims() != expected.as_slice() {
            return Err(Error::ShapeMismatch {
                name: name.clone(),
                expected,
                found: t.dims().to_vec(),
                file: origin.into(),
            });
        }
        plan.push((var, t));
    }
    let known: std::collections::HashSet<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    let mut unexpected: Vec<String> = tensors
        .keys()
        .filter(|k| !is_skipped_key(k) && !known.contains(k.as_str()))
        .cloned()
        .collect();
    if !unexpected.is_empty() {
        unexpected.sort();
        return Err(Error::UnexpectedTensors {
            count: unexpected.len(),
            first: unexpected.into_iter().take(5).collect::<Vec<_>>().join(", "),
            file: origin.into(),
        });
    }
    for (var, t) in plan {
        let t = t.to_dtype(var.dtype())?.to_device(var.device())?;
        var.set(&t)?;
    }
    let skipped = tensors.keys().filter(|k| is_skipped_key(k)).count();
    Ok(LoadReport { loaded: vars.len(), skipped })
}

/// Reads every tensor of a safetensors file onto the CPU; errors name the file.
///
/// ```
/// # use std::collections::HashMap;
/// # use candle_core::{Device, Tensor};
/// let dir = std::env::temp_dir().join(format!("ikd-hrnet-doc-read-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let p = dir.join("t.safetensors");
/// let mut m = HashMap::new();
/// m.insert("a".to_string(), Tensor::new(&[1f32, 2.], &Device::Cpu)?);
/// candle_core::safetensors::save(&m, &p)?;
/// assert_eq!(ikd_hrnet::read_safetensors(&p)?["a"].dims(), &[2]);
/// assert!(ikd_hrnet::read_safetensors(dir.join("nope")).is_err());
/// std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_safetensors(path: impl AsRef<Path>) -> Result<HashMap<String, Tensor>> {
    let path = path.as_ref();
    let bytes =
        std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|source| Error::Safetensors { path: path.to_path_buf(), source })
}

/// Writes every variable of `varmap` to a safetensors file under its (timm) name, plus an I64
/// `num_batches_tracked` of 0 for every BatchNorm, so that PyTorch's
/// `model.load_state_dict(..., strict=False)` accepts it, atomically ([`ikd_io::atomic_write`]): a
/// crash never leaves a half-written file.
///
/// ```
/// use candle_core::{DType, Device};
/// use candle_nn::{VarBuilder, VarMap};
/// let dir = std::env::temp_dir().join(format!("ikd-hrnet-doc-save-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let varmap = VarMap::new();
/// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
/// let _bn = ikd_hrnet::BatchNorm2d::new(4, vb.pp("bn1"))?;
/// ikd_hrnet::save_safetensors(&varmap, dir.join("bn.safetensors"))?;
/// let t = ikd_hrnet::read_safetensors(dir.join("bn.safetensors"))?;
/// assert_eq!(t.len(), 5);
/// assert_eq!(t["bn1.num_batches_tracked"].dtype(), DType::I64);
/// std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn save_safetensors(varmap: &VarMap, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let mut out: HashMap<String, Tensor> = HashMap::new();
    for (name, var) in named_vars(varmap) {
        if let Some(prefix) = name.strip_suffix(".running_mean") {
            let counter = Tensor::new(0i64, &Device::Cpu)?;
            out.insert(format!("{prefix}.num_batches_tracked"), counter);
        }
        out.insert(name, var.as_tensor().detach().to_device(&Device::Cpu)?);
    }
    let bytes = safetensors::tensor::serialize(out, None).map_err(|e| Error::Safetensors {
        path: path.to_path_buf(),
        source: candle_core::Error::wrap(e),
    })?;
    ikd_io::atomic_write(path, &bytes).map_err(|e| Error::Io { path: e.path, source: e.cause })
}

impl HrNet {
    /// Builds a network for `cfg` in a fresh `VarMap` on `device` (f32) and fills it from a
    /// timm-layout safetensors file: the usual way to get the teacher, or to resume a student.
    /// Returns the model and its variables.
    ///
    /// ```
    /// use candle_core::{DType, Device};
    /// use candle_nn::{VarBuilder, VarMap};
    /// use ikd_hrnet::{HrNet, HrNetConfig};
    /// let dir = std::env::temp_dir().join(format!("ikd-hrnet-doc-from-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("w.safetensors");
    /// let cfg = HrNetConfig::w18_small();
    /// let vm = VarMap::new();
    /// HrNet::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
    /// ikd_hrnet::save_safetensors(&vm, &path)?;
    /// let (_model, varmap) = HrNet::from_timm_file(&cfg, &path, &Device::Cpu)?;
    /// assert_eq!(varmap.all_vars().len(), vm.all_vars().len());
    /// std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_timm_file(
        cfg: &HrNetConfig,
        path: impl AsRef<Path>,
        device: &Device,
    ) -> Result<(HrNet, VarMap)> {
        let varmap = VarMap::new();
        let model = HrNet::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
        load_timm(&varmap, path)?;
        Ok((model, varmap))
    }
}
