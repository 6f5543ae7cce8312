//! The recipe of a run: every setting ([`TrainConfig`], the paper's by default), read from and
//! written to TOML, checked, and turned into networks, a device and a transform.

use std::path::{Path, PathBuf};

use candle_core::Device;
use ikd_data::Transform;
use ikd_distill::IkdLossConfig;

use crate::distiller::Networks;
use crate::optim::AdamWParams;
use crate::{Backbone, Distiller, Error, Result, TeacherIdentity, TeacherWeights};

/// Every setting of a training run. `Default` is the paper's recipe (hrnet_w32, ImageNet teacher
/// from the hub, 256², 50 epochs, batch 2, AdamW lr 5e-5, levels 1 and 2 weighted 1 and 2,
/// α 0.01, β 2, γ 1).
///
/// ```
/// let c = ikd::TrainConfig { data_root: "data".into(), category: "bottle".into(), ..Default::default() };
/// assert_eq!(c.epochs, 50);
/// assert_eq!(c.backbone, "hrnet_w32");
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Folder holding the categories in MVTec AD layout.
    pub data_root: PathBuf,
    /// The category (a folder of `data_root`).
    pub category: String,
    /// timm's HRNet name, or a timm cfg as a JSON file.
    pub backbone: String,
    /// Where the teacher's weights come from.
    pub teacher_weights: TeacherWeights,
    /// Start the student from these weights (timm layout) instead of a seeded initialisation.
    pub student_init: Option<PathBuf>,
    /// Side of the square crop fed to the networks.
    pub image_size: u32,
    /// Side the images are resized to before the crop.
    pub load_size: u32,
    /// Passes over the training images.
    pub epochs: u64,
    /// Images per optimiser step.
    pub batch_size: usize,
    /// AdamW's learning rate (the other settings are PyTorch's defaults).
    pub lr: f64,
    /// Seed of the student's initialisation and the shuffling.
    pub seed: u64,
    /// The loss.
    pub loss: IkdLossConfig,
    /// Shuffle the training images every epoch (otherwise: sorted file order).
    pub shuffle: bool,
    /// Stop after this many optimiser steps in all.
    pub max_steps: Option<u64>,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// Folder mode: the images come from these plain folders instead of
    /// `data_root/category` (which then only names the run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folder: Option<ikd_data::FolderSpec>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            data_root: PathBuf::new(),
            category: String::new(),
            backbone: "hrnet_w32".into(),
            teacher_weights: TeacherWeights::Hub,
            student_init: None,
            image_size: 256,
            load_size: 256,
            epochs: 50,
            batch_size: 2,
            lr: 5e-5,
            seed: 0,
            loss: IkdLossConfig::paper(),
            shuffle: true,
            max_steps: None,
            device: "cpu".into(),
            folder: None,
        }
    }
}

impl TrainConfig {
    /// Opens the run's category: `folder` when set, else `<data_root>/<category>` (or
    /// `<data_root_override>/<category>`) in MVTec AD layout, with this [`MaskPolicy`] for the
    /// test images' masks.
    ///
    /// [`MaskPolicy`]: ikd_data::MaskPolicy
    ///
    /// ```no_run
    /// let c = ikd::TrainConfig { data_root: "data/btad".into(), category: "01".into(), ..Default::default() };
    /// let cat = c.open_category(None, ikd_data::MaskPolicy::default())?;
    /// # Ok::<(), ikd::Error>(())
    /// ```
    pub fn open_category(
        &self,
        data_root_override: Option<&std::path::Path>,
        masks: ikd_data::MaskPolicy,
    ) -> Result<ikd_data::Category> {
        let mut cat = match &self.folder {
            Some(f) => f.open(masks)?,
            None => ikd_data::Category::open_with(
                data_root_override.unwrap_or(&self.data_root),
                &self.category,
                masks,
            )?,
        };
        if self.folder.is_some() && !self.category.is_empty() {
            cat.name = self.category.clone();
        }
        Ok(cat)
    }

    /// Checks the settings that do not need the disk.
    ///
    /// ```
    /// let c = ikd::TrainConfig { batch_size: 0, ..Default::default() };
    /// assert!(c.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::setting("batch_size", 0, "must be at least 1"));
        }
        if self.epochs == 0 {
            return Err(Error::setting("epochs", 0, "must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::setting("lr", self.lr, "must be a positive number"));
        }
        if !self.image_size.is_multiple_of(32) || self.image_size == 0 {
            return Err(Error::setting(
                "image_size",
                self.image_size,
                "must be a positive multiple of 32 (HRNet downsamples by 32)",
            ));
        }
        if self.load_size < self.image_size {
            return Err(Error::setting(
                "load_size",
                self.load_size,
                &format!("must be at least image_size ({})", self.image_size),
            ));
        }
        self.loss.validate()?;
        Ok(())
    }

    /// The backbone: a timm name or a JSON cfg file.
    ///
    /// ```
    /// let c = ikd::TrainConfig::default();
    /// assert_eq!(c.backbone().unwrap().name, "hrnet_w32");
    /// ```
    pub fn backbone(&self) -> Result<Backbone> {
        resolve_backbone(&self.backbone)
    }

    /// The image transform.
    ///
    /// ```
    /// assert_eq!(ikd::TrainConfig::default().transform().unwrap(), ikd_data::Transform::paper());
    /// ```
    pub fn transform(&self) -> Result<Transform> {
        Ok(Transform::new(self.load_size, self.image_size)?)
    }

    /// Reads settings from a TOML file (JSON for a `.json` file). Settings the file leaves out
    /// keep their [`Default`] (the paper's), but for `load_size`, which is `image_size` unless
    /// given; an unknown key is an error naming it.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("run.toml");
    /// std::fs::write(&path, "category = \"carpet\"\nepochs = 100\n[loss]\nbeta = 3.0\n")?;
    /// let c = ikd::TrainConfig::load(&path)?;
    /// assert_eq!((c.epochs, c.loss.beta, c.lr), (100, 3.0, 5e-5));
    /// std::fs::write(&path, "epoch = 100\n")?;
    /// assert!(ikd::TrainConfig::load(&path).unwrap_err().to_string().contains("unknown field `epoch`"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load(path: &Path) -> Result<Self> {
        const WHAT: &str = "an ikd training configuration";
        if path.extension().is_some_and(|e| e == "json") {
            return crate::fsutil::read_json(path, WHAT);
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let bad = |e: &dyn std::fmt::Display| Error::bad_file(path, format!("not {WHAT}: {e}"));
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            // one line: where, and what (toml's own message quotes the file over several)
            let at = e.span().map_or(0, |s| s.start.min(text.len()));
            let line = text.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            bad(&format!("line {line}: {}", e.message().trim()))
        })?;
        let has_load_size = table.contains_key("load_size");
        let mut config: Self = table.try_into().map_err(|e| bad(&e))?;
        if !has_load_size {
            // no resizing before the crop unless asked for, as with `--image-size` alone
            config.load_size = config.image_size;
        }
        Ok(config)
    }

    /// Writes the settings as TOML (JSON for a `.json` path), atomically.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("config.toml");
    /// let c = ikd::TrainConfig { category: "carpet".into(), ..Default::default() };
    /// c.save(&path)?;
    /// assert_eq!(ikd::TrainConfig::load(&path)?, c);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save(&self, path: &Path) -> Result<()> {
        if path.extension().is_some_and(|e| e == "json") {
            return crate::fsutil::write_json(path, self);
        }
        let text = toml::to_string(self)
            .map_err(|e| Error::Internal(format!("encoding {}: {e}", path.display())))?;
        Ok(ikd_io::atomic_write(path, text.as_bytes())?)
    }

    /// The settings in which `self` differs from `saved`, as `name: <saved> saved, <self>
    /// given` (loss settings as `loss.<name>`); empty when they agree. Which of them a
    /// continued run may change is the run folder's rule
    /// ([`RunDir::settings_for`](crate::RunDir::settings_for)).
    ///
    /// ```
    /// let saved = ikd::TrainConfig::default();
    /// let given = ikd::TrainConfig { epochs: 100, ..saved.clone() };
    /// assert_eq!(given.changes_from(&saved), ["epochs: 50 saved, 100 given"]);
    /// ```
    pub fn changes_from(&self, saved: &TrainConfig) -> Vec<String> {
        fn flat(prefix: &str, v: serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        flat(&format!("{prefix}{k}."), v, out);
                    }
                }
                v => out.push((prefix.trim_end_matches('.').to_string(), v)),
            }
        }
        let (mut given, mut old) = (Vec::new(), Vec::new());
        flat("", serde_json::to_value(self).unwrap_or_default(), &mut given);
        flat("", serde_json::to_value(saved).unwrap_or_default(), &mut old);
        let old: std::collections::HashMap<_, _> = old.into_iter().collect();
        let show = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "none".to_string(),
            v => v.to_string(),
        };
        given
            .into_iter()
            .filter(|(k, v)| old.get(k) != Some(v))
            .map(|(k, v)| {
                let before = old.get(&k).map_or("none".to_string(), show);
                format!("{k}: {before} saved, {} given", show(&v))
            })
            .collect()
    }

    /// Builds the teacher/student pair for this configuration on `device`.
    ///
    /// ```no_run
    /// let d = ikd::TrainConfig::default().distiller(&candle_core::Device::Cpu)?;
    /// # Ok::<(), ikd::Error>(())
    /// ```
    pub fn distiller(&self, device: &Device) -> Result<Distiller> {
        self.distiller_with(&self.teacher_weights, self.student_init.as_deref(), device)
    }

    /// The networks of the run in `run_dir` (made with these settings) for inference, with the
    /// run's own teacher ([`TeacherIdentity::of_run`]); the student is left to be loaded from
    /// the run's `student.safetensors`.
    pub(crate) fn networks_of_run(&self, run_dir: &Path, device: &Device) -> Result<Networks> {
        let teacher = self.teacher_of_run(run_dir)?;
        Networks::new(&self.backbone()?, &teacher, None, &self.loss.levels, self.seed, device)
    }

    /// The teacher/student pair of the run in `run_dir` for training, with the run's own
    /// teacher; the student and the optimiser are left to be restored from its checkpoint.
    pub(crate) fn distiller_of_run(&self, run_dir: &Path, device: &Device) -> Result<Distiller> {
        self.distiller_with(&self.teacher_of_run(run_dir)?, None, device)
    }

    /// The run's own teacher ([`TeacherIdentity::of_run`]), or these settings' for a run that
    /// recorded none.
    fn teacher_of_run(&self, run_dir: &Path) -> Result<TeacherWeights> {
        Ok(TeacherIdentity::of_run(run_dir)?.unwrap_or(self.teacher_weights.clone()))
    }

    pub(crate) fn distiller_with(
        &self,
        teacher: &TeacherWeights,
        student_init: Option<&Path>,
        device: &Device,
    ) -> Result<Distiller> {
        Distiller::new(
            &self.backbone()?,
            teacher,
            student_init,
            self.loss.clone(),
            AdamWParams { lr: self.lr, ..Default::default() },
            self.seed,
            device,
        )
    }
}

/// A timm HRNet name, or a path to a timm cfg as JSON (its file stem becomes the name).
///
/// ```
/// assert_eq!(ikd::resolve_backbone("hrnet_w18").unwrap().name, "hrnet_w18");
/// assert!(ikd::resolve_backbone("vit_b16").is_err());
/// ```
pub fn resolve_backbone(spec: &str) -> Result<Backbone> {
    if spec.ends_with(".json") {
        let path = Path::new(spec);
        let config = ikd_hrnet::HrNetConfig::from_json_file(path)?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Backbone { name, config })
    } else {
        Backbone::by_name(spec)
    }
}

/// Parses `cpu`, `cuda` or `cuda:N`.
///
/// ```
/// assert!(ikd::parse_device("cpu").unwrap().is_cpu());
/// assert!(ikd::parse_device("tpu").is_err());
/// ```
pub fn parse_device(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n.parse::<usize>().map_err(|_| {
                    Error::setting("device", s, "not a device: expected cuda:N with N a number")
                })?,
                None => 0,
            };
            Device::new_cuda(ordinal).map_err(|e| {
                Error::setting(
                    "device",
                    s,
                    &format!(
                        "not available ({e}); build with `--features cuda` on a machine with an \
                         NVIDIA GPU, or use cpu"
                    ),
                )
            })
        }
        other => Err(Error::setting("device", other, "unknown device: use cpu or cuda:N")),
    }
}
