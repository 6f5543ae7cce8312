//! [`Predictor`]: a finished run loaded once, scoring images — the one inference path of
//! `ikd test`, `ikd predict` and any program that embeds a run.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use ikd_data::Transform;
use image::{DynamicImage, GrayImage, RgbImage};

use crate::distiller::Networks;
use crate::maps::{to_original_size, AnomalyMap};
use crate::{Decision, Error, Result, TestMetrics, TrainConfig};

/// What a run says about one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The anomaly map at the image's own size (higher = more anomalous).
    pub map: AnomalyMap,
    /// The image score: the map's maximum.
    pub score: f64,
    /// The score in `[0, 1]` with the run's threshold at 0.5 ([`Decision::normalized`]);
    /// `None` for a run without a test (no threshold).
    pub normalized: Option<f64>,
    /// The OK/NG decision ([`Decision::is_anomalous`]); `None` without a threshold.
    pub anomalous: Option<bool>,
    /// The defect mask at the image's size (255 where the map reaches the pixel threshold);
    /// `None` without a pixel threshold.
    pub mask: Option<GrayImage>,
    /// The share of the image's pixels in the mask.
    pub defect_fraction: Option<f64>,
}

/// A finished run, loaded once: teacher (the run's own copy), trained student, preprocessing and
/// the thresholds of its test.
///
/// ```no_run
/// use candle_core::Device;
///
/// let predictor = ikd::Predictor::open("runs/bottle", &Device::Cpu)?;
/// let image = ikd_data::load_image("photos/0001.png".as_ref())?;
/// let p = predictor.score(&image)?;
/// match p.anomalous {
///     Some(true) => println!("NG: score {:.3} ({:.2} normalised)", p.score, p.normalized.unwrap()),
///     Some(false) => println!("OK: score {:.3}", p.score),
///     None => println!("score {:.3} (the run was never tested: no threshold)", p.score),
/// }
/// # Ok::<(), ikd::Error>(())
/// ```
pub struct Predictor {
    run_dir: PathBuf,
    config: TrainConfig,
    networks: Networks,
    device: Device,
    transform: Transform,
    metrics: Option<TestMetrics>,
    pixel_threshold: Option<f64>,
}

impl std::fmt::Debug for Predictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Predictor")
            .field("run_dir", &self.run_dir)
            .field("backbone", &self.config.backbone)
            .field("device", &self.device)
            .field("decision", &self.decision())
            .finish()
    }
}

impl Predictor {
    /// Loads the finished run in `run_dir` onto `device`: its settings, its own teacher
    /// (checked against `teacher.json`), its student, and the thresholds of its test
    /// (`metrics.json`, when it was tested).
    pub fn open(run_dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::load(run_dir.as_ref(), Some(device.clone()), true)
    }

    /// [`Predictor::open`] on the device named `device` (`cpu`, `cuda:N`; `None`: the one the
    /// run was trained on), reading the run's thresholds only when `with_metrics` (`ikd test`
    /// makes them anew).
    pub(crate) fn open_named(
        run_dir: &Path,
        device: Option<&str>,
        with_metrics: bool,
    ) -> Result<Self> {
        let device = device.map(crate::parse_device).transpose()?;
        Self::load(run_dir, device, with_metrics)
    }

    /// Loads the run onto `device` (`None`: the device in its settings).
    fn load(run_dir: &Path, device: Option<Device>, with_metrics: bool) -> Result<Self> {
        let run = crate::RunDir::new(run_dir);
        let config = run.load_config()?;
        let device = &match device {
            Some(d) => d,
            None => crate::parse_device(&config.device)?,
        };
        let student = run.student();
        if !student.exists() {
            return Err(Error::run_state(
                run_dir,
                format!(
                    "holds no trained student ({}): its training has not finished",
                    crate::files::STUDENT
                ),
            ));
        }
        let mut networks = config.networks_of_run(run_dir, device)?;
        networks.load_student(&student)?;
        let metrics = if with_metrics { run.load_metrics()? } else { None };
        let pixel_threshold = metrics.as_ref().and_then(|m| m.pixel_threshold());
        Ok(Self {
            run_dir: run_dir.to_path_buf(),
            transform: config.transform()?,
            config,
            networks,
            device: device.clone(),
            metrics,
            pixel_threshold,
        })
    }

    /// Runs the networks on the CPU kernels `policy` allows.
    pub fn with_kernel_policy(mut self, policy: ikd_kernels::KernelPolicy) -> Self {
        self.networks.set_kernel_policy(policy);
        self
    }

    /// Masks from this pixel threshold instead of the run's F1-optimal one.
    pub fn with_pixel_threshold(mut self, threshold: f64) -> Self {
        self.pixel_threshold = Some(threshold);
        self
    }

    /// The run's folder.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The run's settings.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The device the networks run on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// What the run's test measured, if it was tested.
    pub fn metrics(&self) -> Option<&TestMetrics> {
        self.metrics.as_ref()
    }

    /// The OK/NG rule of the run's test; `None` for a run without a test.
    pub fn decision(&self) -> Option<Decision> {
        self.metrics.as_ref().and_then(TestMetrics::decision)
    }

    /// The pixel threshold of the masks.
    pub fn pixel_threshold(&self) -> Option<f64> {
        self.pixel_threshold
    }

    /// The scores that heat maps span from blue to red: the lowest and highest score of the
    /// run's test, so that one colour means one score on every image; `None` for a run without
    /// a test (each heat map then spans its own map).
    pub fn heatmap_range(&self) -> Option<(f32, f32)> {
        self.metrics.as_ref().map(|m| (m.score_range.0 as f32, m.score_range.1 as f32))
    }

    /// The heat map overlay of `image`'s prediction `p` (jet colours over the image, half
    /// opaque) as `ikd predict` writes it: see [`crate::viz::heatmap`].
    pub fn heatmap(&self, image: &DynamicImage, p: &Prediction) -> RgbImage {
        crate::viz::heatmap(image, &p.map, self.heatmap_range())
    }

    /// Scores one image of any size.
    pub fn score(&self, image: &DynamicImage) -> Result<Prediction> {
        let mut p = self.score_batch(std::slice::from_ref(image))?;
        p.pop().ok_or_else(|| Error::Internal("no prediction for the image".into()))
    }

    /// Scores images of any sizes in one batch; one prediction per image, in order.
    pub fn score_batch(&self, images: &[DynamicImage]) -> Result<Vec<Prediction>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let x = images
            .iter()
            .map(|img| Ok(self.transform.apply_image(img, &self.device)?))
            .collect::<Result<Vec<Tensor>>>()?;
        let maps = self.crop_maps(&Tensor::stack(&x, 0)?)?;
        images.iter().zip(maps).map(|(img, map)| self.predict_one(img, &map)).collect()
    }

    /// Anomaly maps of a preprocessed batch `(N, 3, S, S)` at the network's input size `S`
    /// (the centre crop): what `ikd test` scores against the masks.
    pub fn crop_maps(&self, batch: &Tensor) -> Result<Vec<AnomalyMap>> {
        let side = self.transform.image_size as usize;
        let m = self.networks.anomaly_maps_resized(batch, side, side)?;
        (0..batch.dim(0)?)
            .map(|i| {
                let data = m.get(i)?.flatten_all()?.to_vec1::<f32>()?;
                Ok(AnomalyMap { width: side as u32, height: side as u32, data })
            })
            .collect()
    }

    /// Anomaly maps of a preprocessed batch `(N, 3, H, W)` of any size the networks take (H and
    /// W multiples of 32), at the batch's own size: what a graph of `ikd export` computes for
    /// input of that size. For `H = W = image_size` the same maps as [`Predictor::crop_maps`].
    pub fn input_maps(&self, batch: &Tensor) -> Result<Vec<AnomalyMap>> {
        let (n, _, h, w) = batch.dims4()?;
        let m = self.networks.anomaly_maps_resized(batch, h, w)?;
        (0..n)
            .map(|i| {
                let data = m.get(i)?.flatten_all()?.to_vec1::<f32>()?;
                Ok(AnomalyMap { width: w as u32, height: h as u32, data })
            })
            .collect()
    }

    /// A crop's map put back on the image's `w × h` frame.
    pub(crate) fn original_size(&self, map: &AnomalyMap, w: u32, h: u32) -> Result<AnomalyMap> {
        to_original_size(map, self.transform.load_size, w, h, &self.device)
    }

    fn predict_one(&self, img: &DynamicImage, crop: &AnomalyMap) -> Result<Prediction> {
        let map = self.original_size(crop, img.width(), img.height())?;
        let score = map.max() as f64;
        let decision = self.decision();
        let mask = self.pixel_threshold.map(|t| {
            let px = map.data.iter().map(|&v| if v as f64 >= t { 255 } else { 0 }).collect();
            GrayImage::from_raw(map.width, map.height, px)
        });
        let mask = mask
            .map(|m| m.ok_or_else(|| Error::Internal("a mask of another size than its map".into())))
            .transpose()?;
        let defect_fraction = mask.as_ref().map(|m| {
            m.as_raw().iter().filter(|&&v| v != 0).count() as f64 / m.as_raw().len().max(1) as f64
        });
        Ok(Prediction {
            score,
            normalized: decision.map(|d| d.normalized(score)),
            anomalous: decision.map(|d| d.is_anomalous(score)),
            mask,
            defect_fraction,
            map,
        })
    }
}
