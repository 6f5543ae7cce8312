//! A trained ikd run as one ONNX graph: what `ikd export` writes.
//!
//! The graph holds everything between the camera's pixels and the decision, so that
//! onnxruntime, OpenVINO or TensorRT run a run to the maps and decisions of
//! [`ikd::Predictor`]:
//!
//! - input `image`: `float32` RGB in `[0, 1]`, NCHW, at the size the networks see (the run's
//!   `image_size`, or any H and W that are multiples of 32 when the size is dynamic); the
//!   ImageNet normalisation is inside the graph;
//! - the teacher and student HRNets, batch norm folded into the convolutions;
//! - the anomaly map as the `Predictor` makes it: the branches of the run's levels resized
//!   (bilinear, align_corners) to branch 0's size, L2-normalised per pixel, the per-level
//!   distance `Σ_c (t̂ − ŝ)²`, the product over the levels, and the bilinear (half-pixel) resize
//!   to the input;
//! - outputs `anomaly_map` `(N, 1, H, W)` and `pred_score` `(N)` (the map's maximum), and for a
//!   tested run `pred_score_normalized`, `pred_label` and `pred_mask` with the run's
//!   normalisation and thresholds baked in;
//! - `metadata_props`: the backbone, the image size, the teacher's and student's SHA-256, the
//!   run's settings and thresholds.
//!
//! ```no_run
//! let summary = ikd_export::export(
//!     "runs/bottle".as_ref(),
//!     "bottle.onnx".as_ref(),
//!     &ikd_export::ExportOptions::default(),
//! )?;
//! println!("{} outputs: {}", summary.out.display(), summary.outputs.join(", "));
//! # Ok::<(), ikd_export::Error>(())
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use prost::Message;

mod graph;
mod hrnet;

/// The ONNX protobuf messages, generated at build time from the vendored `proto/onnx.proto`.
#[allow(missing_docs, clippy::all, rust_2018_idioms)]
mod onnx {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

use graph::{Dim, Graph};
use onnx::tensor_proto::DataType;

/// What can go wrong exporting a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the run failed (its settings, weights, metrics).
    #[error(transparent)]
    Run(#[from] ikd::Error),
    /// Building the networks from their weights failed.
    #[error(transparent)]
    Hrnet(#[from] ikd_hrnet::Error),
    /// Reading a file of the run (hashing its weights) failed.
    #[error(transparent)]
    Data(#[from] ikd_data::DataError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Writing or reading the ONNX file failed.
    #[error(transparent)]
    Io(#[from] ikd_io::Error),
    /// The run has a backbone or a setting the graph cannot express.
    #[error("cannot export: {0}")]
    Unsupported(String),
    /// The options asked for something impossible.
    #[error("{0}")]
    Options(String),
    /// A file that should be an ONNX model is not one.
    #[error("{}: not an ONNX model: {msg}", path.display())]
    BadModel {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// The opset written unless asked otherwise.
pub const DEFAULT_OPSET: i64 = 17;
/// The opsets the exporter writes (the operators it uses keep their meaning across them).
pub const OPSETS: std::ops::RangeInclusive<i64> = 13..=21;

/// The batch dimension of the graph's input.
///
/// ```
/// use ikd_export::Batch;
/// assert_eq!("dynamic".parse::<Batch>().unwrap(), Batch::Dynamic);
/// assert_eq!("8".parse::<Batch>().unwrap(), Batch::Fixed(8));
/// assert!("0".parse::<Batch>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Batch {
    /// Any number of images (the dimension is named `N`).
    #[default]
    Dynamic,
    /// Exactly this many images.
    Fixed(usize),
}

impl std::str::FromStr for Batch {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "dynamic" {
            return Ok(Batch::Dynamic);
        }
        match s.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Batch::Fixed(n)),
            _ => Err(Error::Options(format!(
                "batch: expected a positive number or `dynamic`, not `{s}`"
            ))),
        }
    }
}

/// The image size of the graph's input.
///
/// ```
/// use ikd_export::Size;
/// assert_eq!("dynamic".parse::<Size>().unwrap(), Size::Dynamic);
/// assert_eq!("256x320".parse::<Size>().unwrap(), Size::Fixed { height: 256, width: 320 });
/// assert!("250x256".parse::<Size>().is_err(), "not a multiple of 32");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Size {
    /// Any height and width that are multiples of 32 (dimensions named `H` and `W`).
    #[default]
    Dynamic,
    /// Exactly this height and width (multiples of 32).
    Fixed {
        /// Height in pixels.
        height: usize,
        /// Width in pixels.
        width: usize,
    },
}

impl std::str::FromStr for Size {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "dynamic" {
            return Ok(Size::Dynamic);
        }
        let bad = |why: &str| Error::Options(format!("size `{s}`: {why}"));
        let (h, w) = s.split_once(['x', 'X']).ok_or_else(|| bad("expected HxW or `dynamic`"))?;
        let parse =
            |v: &str| v.trim().parse::<usize>().map_err(|_| bad("expected HxW or `dynamic`"));
        let (height, width) = (parse(h)?, parse(w)?);
        if height == 0 || width == 0 || height % 32 != 0 || width % 32 != 0 {
            return Err(bad(
                "height and width must be positive multiples of 32 (HRNet downsamples by 32)",
            ));
        }
        Ok(Size::Fixed { height, width })
    }
}

/// How to export.
///
/// ```
/// let o = ikd_export::ExportOptions::default();
/// assert_eq!(o.opset, ikd_export::DEFAULT_OPSET);
/// assert_eq!((o.batch, o.size), (ikd_export::Batch::Dynamic, ikd_export::Size::Dynamic));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportOptions {
    /// The ONNX opset (one of [`OPSETS`]).
    pub opset: i64,
    /// The batch dimension.
    pub batch: Batch,
    /// The image size.
    pub size: Size,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self { opset: DEFAULT_OPSET, batch: Batch::Dynamic, size: Size::Dynamic }
    }
}

/// What [`export`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    /// The ONNX file.
    pub out: PathBuf,
    /// The graph's outputs, in order.
    pub outputs: Vec<String>,
    /// Whether the run was tested (its thresholds are in the graph).
    pub tested: bool,
    /// The model's `metadata_props`.
    pub metadata: Vec<(String, String)>,
    /// The file's size in bytes.
    pub bytes: u64,
    /// Nodes in the graph.
    pub nodes: usize,
}

/// What an ONNX file declares: see [`read_model_info`].
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// The opset of the default domain.
    pub opset: i64,
    /// Inputs: name and dimensions (numbers, or names for dynamic ones).
    pub inputs: Vec<(String, Vec<String>)>,
    /// Outputs: name and dimensions.
    pub outputs: Vec<(String, Vec<String>)>,
    /// `metadata_props`.
    pub metadata: Vec<(String, String)>,
    /// Nodes in the graph.
    pub nodes: usize,
}

impl ModelInfo {
    /// The metadata value under `key`.
    ///
    /// ```
    /// let m = ikd_export::ModelInfo { opset: 17, inputs: vec![], outputs: vec![],
    ///     metadata: vec![("backbone".into(), "hrnet_w32".into())], nodes: 0 };
    /// assert_eq!(m.meta("backbone"), Some("hrnet_w32"));
    /// ```
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Reads the inputs, outputs and metadata of an ONNX file.
///
/// ```no_run
/// let info = ikd_export::read_model_info("bottle.onnx".as_ref())?;
/// println!("backbone {:?}", info.meta("backbone"));
/// # Ok::<(), ikd_export::Error>(())
/// ```
pub fn read_model_info(path: &Path) -> Result<ModelInfo> {
    let bytes = std::fs::read(path).map_err(|e| ikd_io::Error::new(path, e))?;
    let bad = |msg: String| Error::BadModel { path: path.to_path_buf(), msg };
    let model = onnx::ModelProto::decode(bytes.as_slice()).map_err(|e| bad(e.to_string()))?;
    let graph = model.graph.ok_or_else(|| bad("it has no graph".into()))?;
    let dims = |v: &onnx::ValueInfoProto| -> (String, Vec<String>) {
        use onnx::tensor_shape_proto::dimension::Value;
        let mut out = Vec::new();
        if let Some(onnx::type_proto::Value::TensorType(t)) =
            v.r#type.as_ref().and_then(|t| t.value.as_ref())
        {
            for d in t.shape.iter().flat_map(|s| &s.dim) {
                out.push(match &d.value {
                    Some(Value::DimValue(n)) => n.to_string(),
                    Some(Value::DimParam(p)) => p.clone(),
                    None => "?".into(),
                });
            }
        }
        (v.name.clone().unwrap_or_default(), out)
    };
    Ok(ModelInfo {
        opset: model
            .opset_import
            .iter()
            .find(|o| o.domain.as_deref().unwrap_or("").is_empty())
            .and_then(|o| o.version)
            .unwrap_or(0),
        inputs: graph.input.iter().map(dims).collect(),
        outputs: graph.output.iter().map(dims).collect(),
        metadata: model
            .metadata_props
            .iter()
            .map(|p| (p.key.clone().unwrap_or_default(), p.value.clone().unwrap_or_default()))
            .collect(),
        nodes: graph.node.len(),
    })
}

/// Where a network's weights come from.
enum Source {
    File(PathBuf),
    Seed(u64),
}

/// Builds `cfg`'s network as `ikd` does (a fresh `VarMap`, then the file or the seeded
/// initialisation) and reads its variables.
fn weights(
    cfg: &ikd_hrnet::HrNetConfig,
    source: &Source,
    prefix: &'static str,
) -> Result<hrnet::Weights> {
    let varmap = VarMap::new();
    ikd_hrnet::HrNet::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
    match source {
        Source::File(path) => {
            ikd_hrnet::load_timm(&varmap, path)?;
        }
        Source::Seed(seed) => ikd::init::seeded_init(&ikd_hrnet::named_vars(&varmap), *seed)?,
    }
    let mut tensors = HashMap::new();
    for (name, var) in ikd_hrnet::named_vars(&varmap) {
        let t = var.as_tensor().to_dtype(DType::F32)?;
        tensors.insert(name, (t.dims().to_vec(), t.flatten_all()?.to_vec1::<f32>()?));
    }
    Ok(hrnet::Weights { prefix, tensors })
}

/// The smallest `f32` at or above `t`: for an `f32` score `s`, `s as f64 >= t` exactly when
/// `s >= at_least(t)`, so a threshold compared in `f32` decides as the `f64` one does.
fn at_least(t: f64) -> f32 {
    let f = t as f32;
    if (f as f64) < t {
        f.next_up()
    } else {
        f
    }
}

/// The IR version that goes with `opset` (ONNX's versioning table).
fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

/// Exports the finished run in `run_dir` as one ONNX graph at `out` (written atomically: a
/// failed export leaves no file). A run that was never tested gets `anomaly_map` and
/// `pred_score` only, and a log line and its metadata say so. Settings the graph cannot express
/// (a centre crop, a backbone that does not take RGB) are an [`Error::Unsupported`].
pub fn export(run_dir: &Path, out: &Path, opts: &ExportOptions) -> Result<ExportSummary> {
    let run = RunToExport::open(run_dir, opts)?;
    let mut g = Graph::new(opts.opset);
    let n = match opts.batch {
        Batch::Dynamic => Dim::Named("N"),
        Batch::Fixed(b) => Dim::Fixed(b as i64),
    };
    let (h, w) = match opts.size {
        Size::Dynamic => (Dim::Named("H"), Dim::Named("W")),
        Size::Fixed { height, width } => (Dim::Fixed(height as i64), Dim::Fixed(width as i64)),
    };
    anomaly_map_graph(&mut g, &run)?;
    let mut outputs = vec![
        graph::value_info(
            "anomaly_map",
            DataType::Float,
            &[n.clone(), Dim::Fixed(1), h.clone(), w.clone()],
        ),
        graph::value_info("pred_score", DataType::Float, std::slice::from_ref(&n)),
    ];
    outputs.extend(decision_graph(&mut g, run.decision, run.pixel_threshold, &[&n, &h, &w]));
    let output_names: Vec<String> = outputs.iter().filter_map(|o| o.name.clone()).collect();
    let meta = run.metadata(run_dir, &output_names)?;
    if !run.tested() {
        tracing::warn!(
            "{}: the run was never tested: the graph gives anomaly_map and pred_score only \
             (no threshold to decide with; test the run and export again for pred_label, \
             pred_score_normalized and pred_mask)",
            run_dir.display()
        );
    }

    let nodes = g.nodes.len();
    let model = onnx::ModelProto {
        ir_version: Some(ir_version(opts.opset)),
        opset_import: vec![onnx::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opts.opset),
        }],
        producer_name: Some("ikd".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(format!(
            "IKD anomaly segmenter ({}, run {}): teacher and student HRNets, anomaly map, score{}",
            run.backbone.name,
            run_dir.display(),
            if run.tested() { ", decision" } else { " (untested run: no decision)" }
        )),
        graph: Some(onnx::GraphProto {
            node: std::mem::take(&mut g.nodes),
            name: Some("ikd".into()),
            initializer: std::mem::take(&mut g.initializers),
            input: vec![graph::value_info("image", DataType::Float, &[n, Dim::Fixed(3), h, w])],
            output: outputs,
            ..Default::default()
        }),
        metadata_props: meta
            .iter()
            .map(|(k, v)| onnx::StringStringEntryProto {
                key: Some(k.clone()),
                value: Some(v.clone()),
            })
            .collect(),
        ..Default::default()
    };
    let bytes = model.encode_to_vec();
    if bytes.len() >= (2usize << 30) {
        return Err(Error::Unsupported(format!(
            "the model is {} bytes, over protobuf's 2 GiB limit for one file",
            bytes.len()
        )));
    }
    ikd_io::atomic_write(out, &bytes)?;
    tracing::info!(
        "{}: {} nodes, {:.1} MB, outputs {}",
        out.display(),
        nodes,
        bytes.len() as f64 / 1e6,
        output_names.join(", ")
    );
    Ok(ExportSummary {
        out: out.to_path_buf(),
        outputs: output_names,
        tested: run.tested(),
        metadata: meta,
        bytes: bytes.len() as u64,
        nodes,
    })
}

/// What the graph is made of: the run's settings, both networks' weights and its test's
/// thresholds, checked for what the graph can express.
struct RunToExport {
    config: ikd::TrainConfig,
    backbone: ikd::Backbone,
    levels: Vec<usize>,
    student: PathBuf,
    teacher_weights: ikd::TeacherWeights,
    teacher_source: Source,
    identity: Option<ikd::TeacherIdentity>,
    teacher: hrnet::Weights,
    student_weights: hrnet::Weights,
    decision: Option<ikd::Decision>,
    pixel_threshold: Option<f64>,
}

impl RunToExport {
    fn open(run_dir: &Path, opts: &ExportOptions) -> Result<Self> {
        if !OPSETS.contains(&opts.opset) {
            return Err(Error::Options(format!(
                "opset {}: the exporter writes opsets {} to {}",
                opts.opset,
                OPSETS.start(),
                OPSETS.end()
            )));
        }
        let run = ikd::RunDir::new(run_dir);
        let config = run.load_config()?;
        let backbone = config.backbone()?;
        let cfg = &backbone.config;
        if cfg.in_chans != 3 {
            return Err(Error::Unsupported(format!(
                "backbone `{}` takes {} input channels; the graph's input is RGB",
                backbone.name, cfg.in_chans
            )));
        }
        if config.load_size != config.image_size {
            return Err(Error::Unsupported(format!(
                "the run resizes images to {0}×{0} and crops {1}×{1} (load_size {0}, image_size \
                 {1}): the graph runs on the whole input and cannot reproduce the Predictor's \
                 crop and framing of the map; export a run trained with load_size = image_size",
                config.load_size, config.image_size
            )));
        }
        let levels = config.loss.levels.clone();
        if levels.is_empty() || levels.iter().any(|&l| l > 3) {
            return Err(Error::Unsupported(format!(
                "levels {levels:?}: the anomaly map reads the branches 0 to 3"
            )));
        }
        let student = run.student();
        if !student.is_file() {
            return Err(ikd::Error::bad_file(
                &student,
                "missing: the run's training has not finished (continue it with `ikd run`)".into(),
            )
            .into());
        }
        let (teacher_weights, teacher_source) = teacher_source(run_dir, &config, &backbone)?;
        let identity = if run.teacher().is_file() {
            Some(ikd::TeacherIdentity::load(&run.teacher())?)
        } else {
            None
        };
        let teacher = weights(cfg, &teacher_source, "teacher")?;
        let student_weights = weights(cfg, &Source::File(student.clone()), "student")?;

        let metrics = run.load_metrics()?;
        let decision = metrics.as_ref().and_then(ikd::TestMetrics::decision);
        let pixel_threshold = metrics.as_ref().and_then(ikd::TestMetrics::pixel_threshold);
        if let Some(d) = decision {
            if !(d.threshold.is_finite() && d.min.is_finite() && d.max.is_finite()) {
                return Err(Error::Unsupported(format!(
                    "{}: the image threshold {} or the score range [{}, {}] is not finite",
                    run.metrics().display(),
                    d.threshold,
                    d.min,
                    d.max
                )));
            }
        }
        Ok(Self {
            config,
            backbone,
            levels,
            student,
            teacher_weights,
            teacher_source,
            identity,
            teacher,
            student_weights,
            decision,
            pixel_threshold,
        })
    }

    fn tested(&self) -> bool {
        self.decision.is_some() || self.pixel_threshold.is_some()
    }

    /// The model's `metadata_props`: what a deployment reads to know which run it holds.
    fn metadata(&self, run_dir: &Path, output_names: &[String]) -> Result<Vec<(String, String)>> {
        let teacher_sha256 = match (&self.identity, &self.teacher_source) {
            (Some(id), _) if id.sha256().is_some() => id.sha256().unwrap_or_default().into(),
            (_, Source::Seed(seed)) => format!("none: random teacher (seed {seed})"),
            (_, Source::File(p)) => ikd_data::sha256_file(p, false)?,
        };
        let mut meta: Vec<(String, String)> = vec![
            ("producer".into(), format!("ikd {}", env!("CARGO_PKG_VERSION"))),
            (
                "run".into(),
                run_dir.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
            ),
            ("backbone".into(), self.backbone.name.clone()),
            (
                "backbone_config".into(),
                serde_json::to_string(&self.backbone.config).unwrap_or_default(),
            ),
            ("image_size".into(), self.config.image_size.to_string()),
            ("levels".into(), serde_json::to_string(&self.levels).unwrap_or_default()),
            (
                "input".into(),
                "image: float32 RGB in [0, 1], NCHW; height and width multiples of 32 (the run's \
                 image_size is the size it was trained and tested at); ImageNet normalisation is \
                 inside the graph"
                    .into(),
            ),
            ("outputs".into(), output_names.join(",")),
            (
                "teacher".into(),
                self.identity.as_ref().map_or_else(
                    || format!("{} (the run predates teacher.json)", self.teacher_weights),
                    ikd::TeacherIdentity::describe,
                ),
            ),
            ("teacher_sha256".into(), teacher_sha256),
            ("student_sha256".into(), ikd_data::sha256_file(&self.student, false)?),
            ("settings".into(), serde_json::to_string(&self.config).unwrap_or_default()),
            ("tested".into(), self.tested().to_string()),
        ];
        match self.decision {
            Some(d) => {
                meta.push(("image_threshold".into(), d.threshold.to_string()));
                meta.push(("image_score_min".into(), d.min.to_string()));
                meta.push(("image_score_max".into(), d.max.to_string()));
                meta.push((
                    "normalization".into(),
                    "pred_score_normalized = clip((pred_score - image_threshold) / \
                     (image_score_max - image_score_min) + 0.5, 0, 1); pred_label = pred_score >= \
                     image_threshold"
                        .into(),
                ));
            }
            None => meta.push((
                "image_threshold".into(),
                "none: the run was not tested (run `ikd test`, then export again)".into(),
            )),
        }
        let pixel = self.pixel_threshold.map_or_else(|| "none".into(), |t| t.to_string());
        meta.push(("pixel_threshold".into(), pixel));
        Ok(meta)
    }
}

/// The teacher the Predictor rebuilds: the run's own copy (checked against teacher.json) or the
/// seeded initialisation.
fn teacher_source(
    run_dir: &Path,
    config: &ikd::TrainConfig,
    backbone: &ikd::Backbone,
) -> Result<(ikd::TeacherWeights, Source)> {
    let teacher_weights =
        ikd::TeacherIdentity::of_run(run_dir)?.unwrap_or(config.teacher_weights.clone());
    let source = match ikd::teacher_weights_file(&backbone.name, &teacher_weights)? {
        Some(path) => Source::File(path),
        None => match ikd::TeacherIdentity::resolve(
            &backbone.name,
            &ikd::TeacherWeights::Random,
            config.seed,
        )? {
            ikd::TeacherIdentity::Random { seed } => Source::Seed(seed),
            other => {
                return Err(Error::Unsupported(format!(
                    "a random teacher resolved to {}",
                    other.describe()
                )))
            }
        },
    };
    Ok((teacher_weights, source))
}

/// `image` to `anomaly_map` and `pred_score`: ImageNet normalisation, both HRNets, the anomaly
/// map as the Predictor makes it and its maximum.
fn anomaly_map_graph(g: &mut Graph, run: &RunToExport) -> Result<()> {
    let cfg = &run.backbone.config;
    let levels = &run.levels;
    let mean = g.init_f32("imagenet_mean", &[1, 3, 1, 1], &ikd_data::IMAGENET_MEAN);
    let std = g.init_f32("imagenet_std", &[1, 3, 1, 1], &ikd_data::IMAGENET_STD);
    let centred = g.binary("Sub", "image", &mean);
    let x = g.binary("Div", &centred, &std);
    let t = hrnet::hrnet(g, cfg, &run.teacher, &x)?;
    let s = hrnet::hrnet(g, cfg, &run.student_weights, &x)?;
    if t.len() <= *levels.iter().max().unwrap_or(&0) {
        return Err(Error::Unsupported(format!(
            "levels {levels:?}, but the backbone has {} stage-4 branches",
            t.len()
        )));
    }
    // ikd-distill's L2 normalisation: x / sqrt(max(Σ_c x², ε²))
    let eps2 = g.scalar("eps2", (ikd_distill::NORM_EPS * ikd_distill::NORM_EPS) as f32);
    let mut map: Option<String> = None;
    for &level in levels {
        let mut normalised = Vec::with_capacity(2);
        for branch in [&t[level], &s[level]] {
            // IKD features: branch `level` resized to branch 0's size (align_corners)
            let f = if level == 0 {
                branch.clone()
            } else {
                g.resize(branch, 1 << level, "linear", "align_corners")
            };
            let sq = g.binary("Mul", &f, &f);
            let sum = g.reduce_sum(&sq, &[1], true);
            let clamped = g.binary("Max", &sum, &eps2);
            let norm = g.unary("Sqrt", &clamped);
            normalised.push(g.binary("Div", &f, &norm));
        }
        let diff = g.binary("Sub", &normalised[0], &normalised[1]);
        let sq = g.binary("Mul", &diff, &diff);
        let d = g.reduce_sum(&sq, &[1], true);
        map = Some(match map {
            None => d,
            Some(m) => g.binary("Mul", &m, &d),
        });
    }
    let map = map.ok_or_else(|| Error::Unsupported("no levels".into()))?;
    // back to the input's size: bilinear with half-pixel centres (as OpenCV), ×4
    let resized = g.resize(&map, 4, "linear", "half_pixel");
    g.node_named("Identity", &[&resized], vec![], "anomaly_map");
    let score = g.reduce_max("anomaly_map", &[1, 2, 3], false);
    g.node_named("Identity", &[&score], vec![], "pred_score");
    Ok(())
}

/// A tested run's decisions: `pred_score_normalized` and `pred_label` from the image threshold,
/// `pred_mask` from the pixel threshold; the outputs they add. `nhw`: the batch, height and width.
fn decision_graph(
    g: &mut Graph,
    decision: Option<ikd::Decision>,
    pixel_threshold: Option<f64>,
    nhw: &[&Dim; 3],
) -> Vec<onnx::ValueInfoProto> {
    let [n, h, w] = *nhw;
    let mut outputs = Vec::new();
    if let Some(d) = decision {
        let threshold = g.scalar("image_threshold", at_least(d.threshold));
        let label = g.binary("GreaterOrEqual", "pred_score", &threshold);
        g.node_named("Identity", &[&label], vec![], "pred_label");
        let span = d.max - d.min;
        let normalised = if span > 0.0 {
            let t32 = g.scalar("threshold", d.threshold as f32);
            let span32 = g.scalar("score_span", span as f32);
            let (half, zero, one) =
                (g.scalar("half", 0.5), g.scalar("zero", 0.0), g.scalar("one", 1.0));
            let shifted = g.binary("Sub", "pred_score", &t32);
            let scaled = g.binary("Div", &shifted, &span32);
            let v = g.binary("Add", &scaled, &half);
            g.node("Clip", &[&v, &zero, &one], vec![], "clip")
        } else {
            // one score in the whole test: 1 from the threshold up, else 0 (Decision::normalized)
            g.node("Cast", &[&label], vec![graph::attr_int("to", DataType::Float as i64)], "cast")
        };
        g.node_named("Identity", &[&normalised], vec![], "pred_score_normalized");
        outputs.push(graph::value_info(
            "pred_score_normalized",
            DataType::Float,
            std::slice::from_ref(n),
        ));
        outputs.push(graph::value_info("pred_label", DataType::Bool, std::slice::from_ref(n)));
    }
    if let Some(pt) = pixel_threshold {
        let threshold = g.scalar("pixel_threshold", at_least(pt));
        let mask = g.binary("GreaterOrEqual", "anomaly_map", &threshold);
        g.node_named("Identity", &[&mask], vec![], "pred_mask");
        outputs.push(graph::value_info(
            "pred_mask",
            DataType::Bool,
            &[n.clone(), Dim::Fixed(1), h.clone(), w.clone()],
        ));
    }
    outputs
}
