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
#[serde(from = "String", into = "String")]
pub enum TeacherWeights {
    /// timm's ImageNet weights `timm/<backbone>.ms_in1k` from the Hugging Face hub (or its cache).
    Hub,
    /// A timm-layout safetensors file.
    File(PathBuf),
    /// Seeded random initialisation (for tests and offline demos; not a useful teacher).
    Random,
}

/// Written in a configuration as on the command line: `"hub"`, `"random"` or a path.
impl From<String> for TeacherWeights {
    fn from(s: String) -> Self {
        match s.parse() {
            Ok(w) => w,
            Err(e) => match e {},
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
/// One training step and the anomaly maps of a tiny HRNet with random weights (a real run takes
/// `Backbone::by_name("hrnet_w32")` and the hub's teacher):
///
/// ```
/// use candle_core::{Device, Tensor};
/// use ikd::{Backbone, Distiller, TeacherWeights};
/// use ikd_hrnet::{HrNetConfig, StageConfig};
///
/// let tiny = HrNetConfig {
///     stem_width: 16,
///     in_chans: 3,
///     stage1: StageConfig::bottleneck(1, 8),
///     stage2: StageConfig::basic(1, &[1, 1], &[4, 8]),
///     stage3: StageConfig::basic(1, &[1, 1, 1], &[4, 8, 16]),
///     stage4: StageConfig::basic(1, &[1, 1, 1, 1], &[4, 8, 16, 32]),
/// };
/// let backbone = Backbone { name: "tiny".into(), config: tiny };
/// let adam = ikd::optim::AdamWParams { lr: 1e-3, ..Default::default() };
/// let mut d = Distiller::new(&backbone, &TeacherWeights::Random, None,
///     ikd_distill::IkdLossConfig::paper(), adam, 0, &Device::Cpu)?;
/// d.set_kernel_policy(ikd::KernelPolicy::default());
/// assert_eq!((d.backbone().name.as_str(), d.device().is_cpu()), ("tiny", true));
///
/// let x = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &Device::Cpu)?;
/// let stats = d.train_step(&x)?;
/// assert!(stats.loss.is_finite() && stats.margins.len() == 2);
/// assert_eq!(d.loss().state().margins.len(), 2);
///
/// // maps at 1/4 of the input, or resized to it
/// assert_eq!(d.anomaly_maps(&x)?.dims(), &[2, 16, 16]);
/// assert_eq!(d.anomaly_maps_resized(&x, 64, 64)?.dims(), &[2, 64, 64]);
///
/// // what a checkpoint holds, restored into a fresh pair, gives the same next step
/// let state = d.training_state();
/// assert_eq!(state.step, 1);
/// let mut e = Distiller::new(&backbone, &TeacherWeights::Random, None,
///     ikd_distill::IkdLossConfig::paper(), adam, 0, &Device::Cpu)?;
/// e.restore_training_state(&state)?;
/// assert_eq!(d.train_step(&x)?, e.train_step(&x)?);
///
/// // the student in timm's layout, loaded back
/// let dir = tempfile::tempdir()?;
/// let student = dir.path().join("student.safetensors");
/// ikd_hrnet::save_safetensors(d.student_vars(), &student)?;
/// e.load_student(&student)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Distiller {
    nets: Networks,
    loss: IkdLoss,
    opt: AdamW,
}

/// Everything training needs to go on from where it is: the student's variables (timm names),
/// AdamW's moments (`m.<name>`, `v.<name>`), the optimiser step and the AHSM margins. A
/// checkpoint ([`crate::checkpoint::Checkpoint`]) stores it.
#[derive(Debug, Clone)]
pub struct TrainingState {
    /// The student's variables, weights and BatchNorm statistics, by timm name.
    pub student: HashMap<String, Tensor>,
    /// AdamW's moments.
    pub optim: HashMap<String, Tensor>,
    /// Optimiser steps taken.
    pub step: u64,
    /// The AHSM margins.
    pub loss_state: IkdLossState,
}

/// The teacher/student pair without training: the networks and the loss's levels, enough for
/// anomaly maps ([`crate::Predictor`] holds one; [`Distiller`] adds the loss and AdamW).
pub(crate) struct Networks {
    backbone: Backbone,
    teacher: HrNet,
    student: HrNet,
    student_vars: VarMap,
    levels: Vec<usize>,
    device: Device,
}

impl Networks {
    /// The teacher from `teacher` (a random one seeded with `seed + 1`), the student from
    /// `student_init` or seeded with `seed`.
    pub(crate) fn new(
        backbone: &Backbone,
        teacher: &TeacherWeights,
        student_init: Option<&Path>,
        levels: &[usize],
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let teacher_file = teacher_weights_file(&backbone.name, teacher)?;
        let (_, teacher_vars) =
            build(&backbone.config, teacher_file.as_deref(), teacher_seed(seed), device)?;
        let teacher = frozen(&backbone.config, &teacher_vars, device)?;
        let (student, student_vars) = build(&backbone.config, student_init, seed, device)?;
        Ok(Self {
            backbone: backbone.clone(),
            teacher,
            student,
            student_vars,
            levels: levels.to_vec(),
            device: device.clone(),
        })
    }

    pub(crate) fn set_kernel_policy(&mut self, policy: KernelPolicy) {
        self.teacher.set_kernel_policy(policy);
        self.student.set_kernel_policy(policy);
    }

    pub(crate) fn load_student(&mut self, path: &Path) -> Result<()> {
        ikd_hrnet::load_timm(&self.student_vars, path)?;
        Ok(())
    }

    fn teacher_features(&self, images: &Tensor) -> Result<Vec<Tensor>> {
        Ok(self
            .teacher
            .ikd_features_at(&images.detach(), false, &self.levels)?
            .into_iter()
            .map(|t| t.detach())
            .collect())
    }

    pub(crate) fn anomaly_maps(&self, images: &Tensor) -> Result<Tensor> {
        let images = images.detach();
        let t = self.teacher_features(&images)?;
        let s = self.student.ikd_features_at(&images, false, &self.levels)?;
        let s: Vec<Tensor> = s.into_iter().map(|t| t.detach()).collect();
        Ok(ikd_distill::anomaly_map(&t, &s, &self.levels)?)
    }

    pub(crate) fn anomaly_maps_resized(
        &self,
        images: &Tensor,
        h: usize,
        w: usize,
    ) -> Result<Tensor> {
        let maps = self.anomaly_maps(images)?.unsqueeze(1)?;
        Ok(ikd_hrnet::resize_bilinear_half_pixel(&maps, h, w)?.squeeze(1)?)
    }
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
    pub fn new(
        backbone: &Backbone,
        teacher: &TeacherWeights,
        student_init: Option<&Path>,
        loss: IkdLossConfig,
        adam: AdamWParams,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let nets = Networks::new(backbone, teacher, student_init, &loss.levels, seed, device)?;
        let trainable = ikd_hrnet::named_vars(&nets.student_vars)
            .into_iter()
            .filter(|(n, _)| !ikd_hrnet::is_running_stat(n))
            .collect();
        let opt = AdamW::new(trainable, adam)?;
        let loss = IkdLoss::new(loss)?;
        Ok(Self { nets, loss, opt })
    }

    /// The backbone configuration.
    pub fn backbone(&self) -> &Backbone {
        &self.nets.backbone
    }

    /// The device the pair lives on.
    pub fn device(&self) -> &Device {
        &self.nets.device
    }

    /// The student's variables (weights and BatchNorm statistics, timm names).
    pub fn student_vars(&self) -> &VarMap {
        &self.nets.student_vars
    }

    /// Runs teacher and student on the CPU kernels `policy` allows (by default all of them;
    /// [`KernelPolicy::candle`]: candle's own ops).
    pub fn set_kernel_policy(&mut self, policy: KernelPolicy) {
        self.nets.set_kernel_policy(policy);
    }

    /// The [`KernelPolicy`] teacher and student run with.
    pub fn kernel_policy(&self) -> KernelPolicy {
        self.nets.student.kernel_policy()
    }

    /// The loss (configuration and AHSM margins).
    pub fn loss(&self) -> &IkdLoss {
        &self.loss
    }

    /// One optimiser step on a batch of normalised images (N, 3, H, W): teacher features in
    /// evaluation mode without a graph, student features in training mode, IKD loss, AdamW.
    /// A non-finite loss is an error and leaves the student, the optimiser and the margins as they
    /// were before the step.
    pub fn train_step(&mut self, images: &Tensor) -> Result<StepStats> {
        if self.nets.device.is_cpu() {
            // the whole step on one of the kernels' threads: see `ikd_kernels::in_pool`
            ikd_kernels::in_pool(|| self.train_step_inner(images))
        } else {
            self.train_step_inner(images)
        }
    }

    fn train_step_inner(&mut self, images: &Tensor) -> Result<StepStats> {
        let t = self.nets.teacher_features(images)?;
        let s = self.nets.student.ikd_features_at(images, true, &self.loss.config().levels)?;
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

    /// Anomaly maps (N, h, w) at feature resolution (1/4 of the input): the product over the loss's
    /// levels of the per-pixel distance, both networks in evaluation mode.
    pub fn anomaly_maps(&self, images: &Tensor) -> Result<Tensor> {
        self.nets.anomaly_maps(images)
    }

    /// Anomaly maps resized to (h, w) by bilinear interpolation with half-pixel centres (as
    /// OpenCV's `resize`), shape (N, h, w).
    pub fn anomaly_maps_resized(&self, images: &Tensor, h: usize, w: usize) -> Result<Tensor> {
        self.nets.anomaly_maps_resized(images, h, w)
    }

    /// Everything needed to resume training ([`TrainingState`]).
    pub fn training_state(&self) -> TrainingState {
        let student = ikd_hrnet::named_vars(&self.nets.student_vars)
            .into_iter()
            .map(|(name, var)| (name, var.as_tensor().clone()))
            .collect();
        TrainingState {
            student,
            optim: self.opt.state_tensors(),
            step: self.opt.step_count(),
            loss_state: self.loss.state().clone(),
        }
    }

    /// Restores what [`Distiller::training_state`] returned.
    pub fn restore_training_state(&mut self, state: &TrainingState) -> Result<()> {
        ikd_hrnet::load_timm_tensors(&self.nets.student_vars, &state.student, "checkpoint")?;
        self.opt.load_state(&state.optim, state.step)?;
        self.loss.set_state(state.loss_state.clone())?;
        Ok(())
    }

    /// Loads the student's weights (timm layout, e.g. a finished run's `student.safetensors`).
    pub fn load_student(&mut self, path: &Path) -> Result<()> {
        self.nets.load_student(path)
    }
}
