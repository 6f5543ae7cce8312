//! The teacher/student pair of IKD and its training step.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use ikd_distill::{IkdLoss, IkdLossConfig, IkdLossState};
use ikd_hrnet::{HrNet, HrNetConfig};
use ikd_kernels::KernelPolicy;

use crate::optim::{AdamW, AdamWParams};
use crate::{init::seeded_init, Error, Result};

/// A named HRNet configuration: the name picks timm's hub weights (`timm/<name>.ms_in1k`).
///
/// ```
/// let b = ikd::Backbone::by_name("hrnet_w32").unwrap();
/// assert_eq!(b.config, ikd_hrnet::HrNetConfig::w32());
/// assert!(ikd::Backbone::by_name("resnet50").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Backbone {
    /// timm's model name, e.g. `hrnet_w32`.
    pub name: String,
    /// The architecture.
    pub config: HrNetConfig,
}

impl Backbone {
    /// One of timm's HRNets by name (`hrnet_w18_small`, `hrnet_w18_small_v2`, `hrnet_w18`,
    /// `hrnet_w32`, `hrnet_w48`).
    ///
    /// ```
    /// assert!(ikd::Backbone::by_name("hrnet_w18_small").is_ok());
    /// ```
    pub fn by_name(name: &str) -> Result<Self> {
        let config = HrNetConfig::by_name(name)?;
        Ok(Self { name: name.to_string(), config })
    }
}

/// Where the teacher's weights come from.
///
/// ```
/// use ikd::TeacherWeights;
/// assert_eq!("hub".parse::<TeacherWeights>().unwrap(), TeacherWeights::Hub);
/// assert_eq!("random".parse::<TeacherWeights>().unwrap(), TeacherWeights::Random);
/// assert!(matches!("w.safetensors".parse::<TeacherWeights>().unwrap(), TeacherWeights::File(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "TeacherWeightsRepr", into = "String")]
pub enum TeacherWeights {
    /// timm's ImageNet weights `timm/<backbone>.ms_in1k` from the Hugging Face hub (or its cache).
    Hub,
    /// A timm-layout safetensors file.
    File(PathBuf),
    /// Seeded random initialisation (for tests and offline demos; not a useful teacher).
    Random,
}

/// How [`TeacherWeights`] is written in a configuration: `"hub"`, `"random"` or a path, as on the
/// command line; runs written before took `{"file": PATH}` for a path, which is still read.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum TeacherWeightsRepr {
    Text(String),
    File { file: PathBuf },
}

impl From<TeacherWeightsRepr> for TeacherWeights {
    fn from(r: TeacherWeightsRepr) -> Self {
        match r {
            TeacherWeightsRepr::Text(s) => match s.parse() {
                Ok(w) => w,
                Err(e) => match e {},
            },
            TeacherWeightsRepr::File { file } => TeacherWeights::File(file),
        }
    }
}

impl From<TeacherWeights> for String {
    fn from(w: TeacherWeights) -> Self {
        w.to_string()
    }
}

impl std::str::FromStr for TeacherWeights {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(match s {
            "hub" => TeacherWeights::Hub,
            "random" => TeacherWeights::Random,
            path => TeacherWeights::File(PathBuf::from(path)),
        })
    }
}

impl std::fmt::Display for TeacherWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TeacherWeights::Hub => f.write_str("hub"),
            TeacherWeights::Random => f.write_str("random"),
            TeacherWeights::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// What one training step reports.
///
/// ```
/// let s = ikd::StepStats { loss: 1.0, margins: vec![0.5, 0.4], per_level: vec![1.0, 1.0] };
/// assert!(s.loss.is_finite());
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepStats {
    /// The total loss of the step.
    pub loss: f64,
    /// The AHSM margin of each level after the step.
    pub margins: Vec<f64>,
    /// The loss of each level.
    pub per_level: Vec<f64>,
}

/// A frozen teacher, a trainable student, the IKD loss with its margins, and AdamW.
///
/// ```no_run
/// use candle_core::Device;
/// use ikd::{Backbone, Distiller, TeacherWeights};
/// let mut d = Distiller::new(&Backbone::by_name("hrnet_w18_small")?, &TeacherWeights::Random, None,
///     ikd_distill::IkdLossConfig::paper(), ikd::optim::AdamWParams { lr: 5e-5, ..Default::default() },
///     0, &Device::Cpu)?;
/// let x = candle_core::Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &Device::Cpu)?;
/// let stats = d.train_step(&x)?;
/// println!("loss {}", stats.loss);
/// # Ok::<(), ikd::Error>(())
/// ```
pub struct Distiller {
    backbone: Backbone,
    teacher: HrNet,
    student: HrNet,
    student_vars: VarMap,
    loss: IkdLoss,
    opt: AdamW,
    device: Device,
}

/// Resolves [`TeacherWeights`] to a file, fetching timm's weights from the hub if asked to.
///
/// ```
/// use ikd::TeacherWeights;
/// assert_eq!(ikd::teacher_weights_file("hrnet_w18_small", &TeacherWeights::Random).unwrap(), None);
/// ```
pub fn teacher_weights_file(backbone: &str, weights: &TeacherWeights) -> Result<Option<PathBuf>> {
    match weights {
        TeacherWeights::Random => Ok(None),
        TeacherWeights::File(p) => Ok(Some(p.clone())),
        TeacherWeights::Hub => Ok(Some(ikd_hrnet::fetch_timm_weights(backbone)?)),
    }
}

/// The seed of a random teacher in a run seeded with `seed` (the student takes `seed` itself).
pub(crate) fn teacher_seed(seed: u64) -> u64 {
    seed.wrapping_add(1)
}

/// Builds an HRNet in a fresh `VarMap`, from a timm-layout file or, without one, from a seeded
/// initialisation.
fn build(
    cfg: &HrNetConfig,
    file: Option<&Path>,
    seed: u64,
    device: &Device,
) -> Result<(HrNet, VarMap)> {
    let varmap = VarMap::new();
    let model = HrNet::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    match file {
        Some(path) => {
            ikd_hrnet::load_timm(&varmap, path)?;
        }
        None => seeded_init(&ikd_hrnet::named_vars(&varmap), seed)?,
    }
    Ok((model, varmap))
}

/// Rebuilds `cfg`'s network on detached views of `varmap`'s tensors (sharing their storage): a
/// frozen teacher whose forward passes record no gradient graph, so its activations are freed as
/// soon as they are used instead of living until the features are detached.
fn frozen(cfg: &HrNetConfig, varmap: &VarMap, device: &Device) -> Result<HrNet> {
    let tensors: HashMap<String, Tensor> = ikd_hrnet::named_vars(varmap)
        .into_iter()
        .map(|(name, var)| (name, var.as_tensor().detach()))
        .collect();
    Ok(HrNet::new(cfg, VarBuilder::from_tensors(tensors, DType::F32, device))?)
}

impl Distiller {
    /// Builds the pair: the teacher from `teacher` (resolved with [`teacher_weights_file`]; a random
    /// teacher is seeded with `seed + 1`), the student from `student_init` or a seeded initialisation
    /// (`seed`), AdamW over the student's trainable variables (not its BatchNorm statistics).
    ///
    /// ```no_run
    /// # use ikd::{Distiller, TeacherWeights};
    /// let d = Distiller::new(&ikd::Backbone::by_name("hrnet_w32")?, &TeacherWeights::Hub, None,
    ///     Default::default(), Default::default(), 0, &candle_core::Device::Cpu)?;
    /// # Ok::<(), ikd::Error>(())
    /// ```
    pub fn new(
        backbone: &Backbone,
        teacher: &TeacherWeights,
        student_init: Option<&Path>,
        loss: IkdLossConfig,
        adam: AdamWParams,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let teacher_file = teacher_weights_file(&backbone.name, teacher)?;
        let (_, teacher_vars) =
            build(&backbone.config, teacher_file.as_deref(), teacher_seed(seed), device)?;
        let teacher = frozen(&backbone.config, &teacher_vars, device)?;
        let (student, student_vars) = build(&backbone.config, student_init, seed, device)?;
        let trainable = ikd_hrnet::named_vars(&student_vars)
            .into_iter()
            .filter(|(n, _)| !ikd_hrnet::is_running_stat(n))
            .collect();
        let opt = AdamW::new(trainable, adam)?;
        let loss = IkdLoss::new(loss)?;
        Ok(Self {
            backbone: backbone.clone(),
            teacher,
            student,
            student_vars,
            loss,
            opt,
            device: device.clone(),
        })
    }

    /// The backbone configuration.
    ///
    /// ```no_run
    /// # let d: ikd::Distiller = unimplemented!();
    /// println!("{}", d.backbone().name);
    /// ```
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// The device the pair lives on.
    ///
    /// ```no_run
    /// # let d: ikd::Distiller = unimplemented!();
    /// assert!(d.device().is_cpu());
    /// ```
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The student's variables (weights and BatchNorm statistics, timm names).
    ///
    /// ```no_run
    /// # let d: ikd::Distiller = unimplemented!();
    /// ikd_hrnet::save_safetensors(d.student_vars(), "student.safetensors")?;
    /// # Ok::<(), ikd_hrnet::Error>(())
    /// ```
    pub fn student_vars(&self) -> &VarMap {
        &self.student_vars
    }

    /// Runs teacher and student on the CPU kernels `policy` allows (by default all of them;
    /// [`KernelPolicy::candle`]: candle's own ops).
    ///
    /// ```no_run
    /// # let mut d: ikd::Distiller = unimplemented!();
    /// d.set_kernel_policy(ikd::KernelPolicy::from_env());
    /// ```
    pub fn set_kernel_policy(&mut self, policy: KernelPolicy) {
        self.teacher.set_kernel_policy(policy);
        self.student.set_kernel_policy(policy);
    }

    /// The [`KernelPolicy`] teacher and student run with.
    ///
    /// ```no_run
    /// # let d: ikd::Distiller = unimplemented!();
    /// assert_eq!(d.kernel_policy(), ikd::KernelPolicy::default());
    /// ```
    pub fn kernel_policy(&self) -> KernelPolicy {
        self.student.kernel_policy()
    }

    /// The loss (configuration and AHSM margins).
    ///
    /// ```no_run
    /// # let d: ikd::Distiller = unimplemented!();
    /// println!("{:?}", d.loss().state().margins);
    /// ```
    pub fn loss(&self) -> &IkdLoss {
        &self.loss
    }

    /// One optimiser step on a batch of normalised images (N, 3, H, W): teacher features in
    /// evaluation mode without a graph, student features in training mode, IKD loss, AdamW.
    /// A non-finite loss is an error and leaves the student, the optimiser and the margins as they
    /// were before the step.
    ///
    /// ```no_run
    /// # let mut d: ikd::Distiller = unimplemented!();
    /// # let x: candle_core::Tensor = unimplemented!();
    /// let stats = d.train_step(&x)?;
    /// # Ok::<(), ikd::Error>(())
    /// ```
    pub fn train_step(&mut self, images: &Tensor) -> Result<StepStats> {
        if self.device.is_cpu() {
            // the whole step on one of the kernels' threads: see `ikd_kernels::in_pool`
            ikd_kernels::in_pool(|| self.train_step_inner(images))
        } else {
            self.train_step_inner(images)
        }
    }

    fn train_step_inner(&mut self, images: &Tensor) -> Result<StepStats> {
        let t = self.teacher_features(images)?;
        let s = self.student.ikd_features_at(images, true, &self.loss.config().levels)?;
        let before = self.loss.state().clone();
        let out = self.loss.forward(&t, &s)?;
        let loss = out.total.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !loss.is_finite() {
            self.loss.set_state(before)?;
            return Err(Error::NonFinite(format!(
                "the loss became {loss} at optimiser step {}",
                self.opt.step_count() + 1
            )));
        }
        self.opt.backward_step(&out.total)?;
        Ok(StepStats { loss, margins: out.margins, per_level: out.per_level })
    }

    fn teacher_features(&self, images: &Tensor) -> Result<Vec<Tensor>> {
        Ok(self
            .teacher
            .ikd_features_at(&images.detach(), false, &self.loss.config().levels)?
            .into_iter()
            .map(|t| t.detach())
            .collect())
    }

    /// Anomaly maps (N, h, w) at feature resolution (1/4 of the input): the product over the loss's
    /// levels of the per-pixel distance, both networks in evaluation mode.
    ///
    /// ```no_run
    /// # let d: ikd::Distiller = unimplemented!();
    /// # let x: candle_core::Tensor = unimplemented!();
    /// let maps = d.anomaly_maps(&x)?;
    /// # Ok::<(), ikd::Error>(())
    /// ```
    pub fn anomaly_maps(&self, images: &Tensor) -> Result<Tensor> {
        let images = images.detach();
        let t = self.teacher_features(&images)?;
        let levels = &self.loss.config().levels;
        let s = self.student.ikd_features_at(&images, false, levels)?;
        let s: Vec<Tensor> = s.into_iter().map(|t| t.detach()).collect();
        Ok(ikd_distill::anomaly_map(&t, &s, levels)?)
    }

    /// Anomaly maps resized to (h, w) by bilinear interpolation with half-pixel centres (as
    /// OpenCV's `resize`), shape (N, h, w).
    ///
    /// ```no_run
    /// # let d: ikd::Distiller = unimplemented!();
    /// # let x: candle_core::Tensor = unimplemented!();
    /// let maps = d.anomaly_maps_resized(&x, 256, 256)?;
    /// # Ok::<(), ikd::Error>(())
    /// ```
    pub fn anomaly_maps_resized(&self, images: &Tensor, h: usize, w: usize) -> Result<Tensor> {
        let maps = self.anomaly_maps(images)?.unsqueeze(1)?;
        Ok(ikd_hrnet::resize_bilinear_half_pixel(&maps, h, w)?.squeeze(1)?)
    }

    /// Everything needed to resume training: the student's variables (`student.<name>`), the
    /// optimiser's moments (`optim.m.<name>`, `optim.v.<name>`), the optimiser step and the loss state.
    ///
    /// ```no_run
    /// # let d: ikd::Distiller = unimplemented!();
    /// let (tensors, step, loss_state) = d.training_state();
    /// # Ok::<(), ikd::Error>(())
    /// ```
    pub fn training_state(&self) -> (HashMap<String, Tensor>, u64, IkdLossState) {
        let mut tensors = HashMap::new();
        for (name, var) in ikd_hrnet::named_vars(&self.student_vars) {
            tensors.insert(format!("student.{name}"), var.as_tensor().clone());
        }
        for (name, t) in self.opt.state_tensors() {
            tensors.insert(format!("optim.{name}"), t);
        }
        (tensors, self.opt.step_count(), self.loss.state().clone())
    }

    /// Restores what [`Distiller::training_state`] returned.
    ///
    /// ```no_run
    /// # let mut d: ikd::Distiller = unimplemented!();
    /// let (tensors, step, loss_state) = d.training_state();
    /// d.restore_training_state(&tensors, step, loss_state)?;
    /// # Ok::<(), ikd::Error>(())
    /// ```
    pub fn restore_training_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        step: u64,
        loss_state: IkdLossState,
    ) -> Result<()> {
        let student: HashMap<String, Tensor> = tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("student.").map(|n| (n.to_string(), v.clone())))
            .collect();
        ikd_hrnet::load_timm_tensors(&self.student_vars, &student, "checkpoint")?;
        let optim: HashMap<String, Tensor> = tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("optim.").map(|n| (n.to_string(), v.clone())))
            .collect();
        self.opt.load_state(&optim, step)?;
        self.loss.set_state(loss_state)?;
        Ok(())
    }

    /// Loads the student's weights (timm layout, e.g. a finished run's `student.safetensors`).
    ///
    /// ```no_run
    /// # let mut d: ikd::Distiller = unimplemented!();
    /// d.load_student("runs/bottle/student.safetensors".as_ref())?;
    /// # Ok::<(), ikd::Error>(())
    /// ```
    pub fn load_student(&mut self, path: &Path) -> Result<()> {
        ikd_hrnet::load_timm(&self.student_vars, path)?;
        Ok(())
    }
}
