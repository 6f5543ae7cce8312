//! The extension module `ikd_metrics._native` of the Python package `ikd-metrics`: ikd-metrics'
//! exact metrics for NumPy arrays. The Python package (`python/ikd_metrics`) re-exports it; its
//! type stubs and docs are in `python/ikd_metrics/_native.pyi`.
//!
//! Maps are `float32` or `float64` (`float64` is rounded to `float32`, the precision every metric
//! of ikd-metrics works in), one `(N, H, W)` array or a sequence of `(H, W)` arrays of any sizes;
//! masks are `bool` or `uint8` (nonzero = defect) of the same shapes. Every computation runs with
//! the GIL released, over all of rayon's threads. Every error is a `ValueError` (bad values,
//! shapes, classes) or a `TypeError` (not an array of a supported dtype) naming the image.

// PyO3's macros expand to `unsafe` blocks (the C API); this crate writes none of its own.
#![allow(unsafe_code)]

use std::borrow::Cow;

use ikd_metrics::{
    Accumulator as RustAccumulator, Connectivity, CurveDetail, IkdProConfig, ImageScore, MaskPixel,
    Metrics, MetricsConfig, MetricsError,
};
use numpy::ndarray::{ArrayView2, Axis, Ix2, Ix3};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use rayon::prelude::*;

/// A `ValueError` carrying an ikd-metrics error's message (which names the image where there is
/// one).
fn value_error(e: MetricsError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// One input array of maps, kept borrowed (read-only) while the GIL is released.
enum MapArray<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>),
}

/// One input array of masks.
enum MaskArray<'py> {
    Bool(PyReadonlyArrayDyn<'py, bool>),
    U8(PyReadonlyArrayDyn<'py, u8>),
}

/// One image's map, viewed in its input array.
#[derive(Clone, Copy)]
enum MapView<'a> {
    F32(ArrayView2<'a, f32>),
    F64(ArrayView2<'a, f64>),
}

/// One image's mask, viewed in its input array.
#[derive(Clone, Copy)]
enum MaskView<'a> {
    Bool(ArrayView2<'a, bool>),
    U8(ArrayView2<'a, u8>),
}

impl MapView<'_> {
    fn shape(&self) -> (usize, usize) {
        let s = match self {
            MapView::F32(v) => v.dim(),
            MapView::F64(v) => v.dim(),
        };
        (s.0, s.1)
    }

    /// The scores as contiguous `f32`: borrowed from a C-contiguous `float32` array, copied
    /// otherwise (`float64` rounded to the nearest `f32`).
    fn scores(&self) -> Cow<'_, [f32]> {
        match self {
            MapView::F32(v) => contiguous(v),
            MapView::F64(v) => Cow::Owned(v.iter().map(|&x| x as f32).collect()),
        }
    }
}

/// A 2-D view's values, row-major: borrowed when C-contiguous, copied otherwise.
fn contiguous<'a, T: Copy>(v: &ArrayView2<'a, T>) -> Cow<'a, [T]> {
    match v.to_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(v.iter().copied().collect()),
    }
}

impl MaskView<'_> {
    fn shape(&self) -> (usize, usize) {
        let s = match self {
            MaskView::Bool(v) => v.dim(),
            MaskView::U8(v) => v.dim(),
        };
        (s.0, s.1)
    }
}

/// The items of a list or tuple of arrays; `None` for anything else (one array, or a wrong type
/// that the array extraction then names).
fn items<'py>(obj: &Bound<'py, PyAny>) -> Option<Vec<Bound<'py, PyAny>>> {
    if obj.cast::<PyUntypedArray>().is_ok() {
        return None;
    }
    if let Ok(list) = obj.cast::<PyList>() {
        return Some(list.iter().collect());
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return Some(tuple.iter().collect());
    }
    None
}

fn dtype_name(obj: &Bound<'_, PyAny>) -> String {
    match obj.cast::<PyUntypedArray>() {
        Ok(a) => format!("an array of dtype {}", a.dtype()),
        Err(_) => format!(
            "a {}",
            obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
        ),
    }
}

fn map_array<'py>(obj: &Bound<'py, PyAny>, label: &str) -> PyResult<MapArray<'py>> {
    if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'py, f32>>() {
        return Ok(MapArray::F32(a));
    }
    if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'py, f64>>() {
        return Ok(MapArray::F64(a));
    }
    Err(PyTypeError::new_err(format!(
        "{label}: the anomaly map must be a NumPy array of float32 or float64, not {}",
        dtype_name(obj)
    )))
}

fn mask_array<'py>(obj: &Bound<'py, PyAny>, label: &str) -> PyResult<MaskArray<'py>> {
    if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'py, bool>>() {
        return Ok(MaskArray::Bool(a));
    }
    if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'py, u8>>() {
        return Ok(MaskArray::U8(a));
    }
    Err(PyTypeError::new_err(format!(
        "{label}: the mask must be a NumPy array of bool or uint8 (nonzero = defect), not {}",
        dtype_name(obj)
    )))
}

/// The input arrays of `maps` and `masks`, and for each the number of images it holds: one
/// `(N, H, W)` array (or, where `single` allows it, one `(H, W)` image), or a list or tuple of
/// `(H, W)` arrays.
struct Inputs<'py> {
    maps: Vec<MapArray<'py>>,
    masks: Vec<MaskArray<'py>>,
    /// Lists (each item one 2-D image) rather than one array.
    sequence: bool,
}

impl<'py> Inputs<'py> {
    fn new(maps: &Bound<'py, PyAny>, masks: &Bound<'py, PyAny>) -> PyResult<Self> {
        match (items(maps), items(masks)) {
            (Some(m), Some(k)) => {
                if m.len() != k.len() {
                    return Err(PyValueError::new_err(format!(
                        "{} anomaly maps but {} masks: there must be one mask per map",
                        m.len(),
                        k.len()
                    )));
                }
                let maps = m
                    .iter()
                    .enumerate()
                    .map(|(i, o)| map_array(o, &format!("image {i}")))
                    .collect::<PyResult<Vec<_>>>()?;
                let masks = k
                    .iter()
                    .enumerate()
                    .map(|(i, o)| mask_array(o, &format!("image {i}")))
                    .collect::<PyResult<Vec<_>>>()?;
                Ok(Inputs { maps, masks, sequence: true })
            }
            (None, None) => Ok(Inputs {
                maps: vec![map_array(maps, "maps")?],
                masks: vec![mask_array(masks, "masks")?],
                sequence: false,
            }),
            _ => Err(PyTypeError::new_err(
                "maps and masks must be both arrays or both lists of arrays",
            )),
        }
    }

    /// Every image's map and mask, shapes checked: each item of lists, the outer slices of one
    /// 3-D array (or one 2-D array where `allow_single`).
    fn images(&self, allow_single: bool) -> PyResult<Vec<(MapView<'_>, MaskView<'_>)>> {
        let sequence = self.sequence;
        let mut maps = Vec::new();
        let mut masks = Vec::new();
        for (i, (m, k)) in self.maps.iter().zip(&self.masks).enumerate() {
            let label = if sequence { format!("image {i}") } else { "maps".into() };
            let nm = match m {
                MapArray::F32(a) => split(a, &label, sequence, allow_single, MapView::F32)?,
                MapArray::F64(a) => split(a, &label, sequence, allow_single, MapView::F64)?,
            };
            let label = if sequence { format!("image {i}") } else { "masks".into() };
            let nk = match k {
                MaskArray::Bool(a) => split(a, &label, sequence, allow_single, MaskView::Bool)?,
                MaskArray::U8(a) => split(a, &label, sequence, allow_single, MaskView::U8)?,
            };
            if nm.len() != nk.len() {
                return Err(PyValueError::new_err(format!(
                    "{} anomaly maps but {} masks: there must be one mask per map",
                    nm.len(),
                    nk.len()
                )));
            }
            maps.extend(nm);
            masks.extend(nk);
        }
        let images: Vec<_> = maps.into_iter().zip(masks).collect();
        for (i, (m, k)) in images.iter().enumerate() {
            if m.shape() != k.shape() {
                return Err(PyValueError::new_err(format!(
                    "image {i}: the anomaly map is {:?} (H, W) but the mask is {:?}",
                    m.shape(),
                    k.shape()
                )));
            }
        }
        Ok(images)
    }
}

/// The 2-D images of one input array: its outer slices when it is 3-D (and not an item of a
/// sequence), itself when it is 2-D (and an item of a sequence, or `allow_single`).
fn split<'a, T: numpy::Element, V>(
    a: &'a PyReadonlyArrayDyn<'_, T>,
    label: &str,
    item: bool,
    allow_single: bool,
    wrap: impl Fn(ArrayView2<'a, T>) -> V,
) -> PyResult<Vec<V>> {
    let view = a.as_array();
    let shape = view.shape().to_vec();
    match (shape.len(), item) {
        (2, _) if item || allow_single => {
            let v = view
                .into_dimensionality::<Ix2>()
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            Ok(vec![wrap(v)])
        }
        (3, false) => {
            let v = view
                .into_dimensionality::<Ix3>()
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            Ok((0..v.len_of(Axis(0))).map(|i| wrap(v.index_axis_move(Axis(0), i))).collect())
        }
        _ => Err(PyValueError::new_err(format!(
            "{label}: expected {}, got an array of shape {shape:?}",
            match (item, allow_single) {
                (true, _) => "a 2-D (H, W) array",
                (false, true) => "a 2-D (H, W) or 3-D (N, H, W) array",
                (false, false) => "a 3-D (N, H, W) array or a list of 2-D (H, W) arrays",
            }
        ))),
    }
}

/// Adds one image to `acc`.
fn update_one(
    acc: &mut RustAccumulator,
    map: &MapView<'_>,
    mask: &MaskView<'_>,
) -> Result<(), MetricsError> {
    let (h, w) = map.shape();
    let scores = map.scores();
    fn go<M: MaskPixel>(
        acc: &mut RustAccumulator,
        scores: &[f32],
        mask: &[M],
        w: usize,
        h: usize,
    ) -> Result<(), MetricsError> {
        acc.update(scores, mask, w, h)
    }
    match mask {
        MaskView::Bool(v) => go(acc, &scores, &contiguous(v), w, h),
        MaskView::U8(v) => go(acc, &scores, &contiguous(v), w, h),
    }
}

/// Fills one accumulator over `images` on all of rayon's threads: one accumulator per thread over
/// a contiguous slice of images (numbered from `first` in errors), merged in order.
fn accumulate(
    images: &[(MapView<'_>, MaskView<'_>)],
    config: &MetricsConfig,
    first: usize,
) -> Result<RustAccumulator, MetricsError> {
    let threads = rayon::current_num_threads().max(1);
    let per = images.len().div_ceil(threads).max(1);
    let parts: Vec<Result<RustAccumulator, MetricsError>> = images
        .par_chunks(per)
        .enumerate()
        .map(|(c, chunk)| {
            let mut acc = RustAccumulator::new(config.clone())?.with_first_index(first + c * per);
            for (map, mask) in chunk {
                update_one(&mut acc, map, mask)?;
            }
            Ok(acc)
        })
        .collect();
    let mut total = RustAccumulator::new(config.clone())?.with_first_index(first);
    for part in parts {
        total.merge(part?)?;
    }
    Ok(total)
}

/// Computes `config`'s metrics over `maps` and `masks` with the GIL released.
fn compute(
    py: Python<'_>,
    maps: &Bound<'_, PyAny>,
    masks: &Bound<'_, PyAny>,
    config: MetricsConfig,
) -> PyResult<Metrics> {
    let inputs = Inputs::new(maps, masks)?;
    let images = inputs.images(false)?;
    py.detach(|| accumulate(&images, &config, 0).and_then(RustAccumulator::finish))
        .map_err(value_error)
}

/// Pixel AUROC over every pixel of every image: scikit-learn's ``roc_auc_score``, exactly.
///
/// ``maps``: float32/float64 ``(N, H, W)`` or a list of ``(H, W)`` arrays; ``masks``: bool/uint8 of
/// the same shapes (nonzero = defect). Raises ``ValueError`` naming the image for shapes that
/// differ or a NaN/infinite score, and when there is no defect or no defect-free pixel;
/// ``TypeError`` for other dtypes.
#[pyfunction]
fn pixel_auroc(py: Python<'_>, maps: &Bound<'_, PyAny>, masks: &Bound<'_, PyAny>) -> PyResult<f64> {
    let config = MetricsConfig { pixel_auroc: true, ..MetricsConfig::none() };
    Ok(compute(py, maps, masks, config)?.pixel_auroc.unwrap_or_default())
}

/// AUROC of one score per image (1-D float) against one label per image (1-D bool/uint8,
/// True = defective): scikit-learn's ``roc_auc_score``. ``ValueError`` for lengths that differ, a
/// non-finite score (naming the image) or a single class.
#[pyfunction]
fn image_auroc(
    py: Python<'_>,
    scores: &Bound<'_, PyAny>,
    labels: &Bound<'_, PyAny>,
) -> PyResult<f64> {
    let scores: Vec<f64> = match scores.extract::<numpy::PyReadonlyArray1<'_, f64>>() {
        Ok(a) => a.as_array().to_vec(),
        Err(_) => match scores.extract::<numpy::PyReadonlyArray1<'_, f32>>() {
            Ok(a) => a.as_array().iter().map(|&v| f64::from(v)).collect(),
            Err(_) => {
                return Err(PyTypeError::new_err(format!(
                    "scores must be a 1-D NumPy array of float32 or float64, not {}",
                    dtype_name(scores)
                )))
            }
        },
    };
    let labels: Vec<bool> = match labels.extract::<numpy::PyReadonlyArray1<'_, bool>>() {
        Ok(a) => a.as_array().to_vec(),
        Err(_) => match labels.extract::<numpy::PyReadonlyArray1<'_, u8>>() {
            Ok(a) => a.as_array().iter().map(|&v| v != 0).collect(),
            Err(_) => {
                return Err(PyTypeError::new_err(format!(
                    "labels must be a 1-D NumPy array of bool or uint8, not {}",
                    dtype_name(labels)
                )))
            }
        },
    };
    py.detach(|| ikd_metrics::image_auroc(&scores, &labels)).map_err(value_error)
}

/// ``(fpr, pro)`` as two float64 arrays.
fn curve_arrays<'py>(
    py: Python<'py>,
    fpr: Vec<f64>,
    pro: Vec<f64>,
) -> (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>) {
    (fpr.into_pyarray(py), pro.into_pyarray(py))
}

/// MVTec AD's AU-PRO up to FPR ``limit`` (normalised by the limit) and its PRO curve.
///
/// Returns ``(area, (fpr, pro))``; the curve is sampled to about 2000 exact vertices, every vertex
/// with ``full_curve=True`` (the area always comes from the exact curve). Inputs and errors as
/// ``pixel_auroc``; ``ValueError`` for ``limit`` outside (0, 1].
#[pyfunction]
#[pyo3(signature = (maps, masks, limit = 0.3, full_curve = false))]
#[allow(clippy::type_complexity)]
fn au_pro<'py>(
    py: Python<'py>,
    maps: &Bound<'py, PyAny>,
    masks: &Bound<'py, PyAny>,
    limit: f64,
    full_curve: bool,
) -> PyResult<(f64, (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>))> {
    let config = MetricsConfig {
        au_pro_limits: vec![limit],
        pro_curve: if full_curve { CurveDetail::Full } else { CurveDetail::default() },
        ..MetricsConfig::none()
    };
    let m = compute(py, maps, masks, config)?;
    let area = m.au_pro.first().map_or(0.0, |a| a.value);
    let curve = m.pro_curve.unwrap_or_default();
    Ok((area, curve_arrays(py, curve.fpr, curve.pro)))
}

/// IKD's published PRO (``cal_pro_metric``: ``thresholds`` equally spaced thresholds, regions
/// with holes filled, FPR <= ``max_fpr`` rescaled to [0, 1]). Returns ``(area, (fpr, pro))`` at
/// the thresholds. Inputs and errors as ``pixel_auroc``.
#[pyfunction]
#[pyo3(signature = (maps, masks, thresholds = 200, max_fpr = 0.3))]
#[allow(clippy::type_complexity)]
fn ikd_pro<'py>(
    py: Python<'py>,
    maps: &Bound<'py, PyAny>,
    masks: &Bound<'py, PyAny>,
    thresholds: usize,
    max_fpr: f64,
) -> PyResult<(f64, (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>))> {
    let config = MetricsConfig {
        ikd_pro: Some(IkdProConfig { thresholds, max_fpr }),
        ..MetricsConfig::none()
    };
    let m = compute(py, maps, masks, config)?;
    let p = m.ikd_pro.ok_or_else(|| value_error(MetricsError::NoImages))?;
    Ok((p.value, curve_arrays(py, p.fpr, p.pro)))
}

/// Pixel average precision: scikit-learn's ``average_precision_score`` over every pixel.
/// Inputs and errors as ``pixel_auroc``.
#[pyfunction]
fn average_precision(
    py: Python<'_>,
    maps: &Bound<'_, PyAny>,
    masks: &Bound<'_, PyAny>,
) -> PyResult<f64> {
    let config = MetricsConfig { average_precision: true, ..MetricsConfig::none() };
    Ok(compute(py, maps, masks, config)?.average_precision.unwrap_or_default())
}

/// The best pixel F1 over all thresholds (``score >= threshold`` is a defect).
#[pyclass(frozen, get_all, module = "ikd_metrics")]
#[derive(Debug, Clone, Copy)]
struct F1Max {
    /// The best F1.
    f1: f64,
    /// The lowest threshold that reaches it.
    threshold: f32,
    /// Precision at that threshold.
    precision: f64,
    /// Recall at that threshold.
    recall: f64,
}

#[pymethods]
impl F1Max {
    fn __repr__(&self) -> String {
        format!(
            "F1Max(f1={:?}, threshold={:?}, precision={:?}, recall={:?})",
            self.f1, self.threshold, self.precision, self.recall
        )
    }
}

impl From<ikd_metrics::F1Max> for F1Max {
    fn from(f: ikd_metrics::F1Max) -> Self {
        F1Max { f1: f.f1, threshold: f.threshold, precision: f.precision, recall: f.recall }
    }
}

/// The best pixel F1 over all thresholds, as ``F1Max(f1, threshold, precision, recall)``
/// (``score >= threshold`` is a defect; the lowest threshold among equal F1). Inputs and errors
/// as ``pixel_auroc``.
#[pyfunction]
fn f1_max(py: Python<'_>, maps: &Bound<'_, PyAny>, masks: &Bound<'_, PyAny>) -> PyResult<F1Max> {
    let config = MetricsConfig { f1_max: true, ..MetricsConfig::none() };
    let m = compute(py, maps, masks, config)?;
    m.f1_max
        .map(F1Max::from)
        .ok_or_else(|| value_error(MetricsError::NoDefectPixel { images: m.images }))
}

/// Connected components of one ``(H, W)`` bool/uint8 mask, numbered like
/// ``scipy.ndimage.label``: returns ``(labels, count)``, labels uint32 ``(H, W)``. ``connectivity``
/// 8 (as MVTec AD's evaluation) or 4.
#[pyfunction]
#[pyo3(signature = (mask, connectivity = 8))]
fn label_components<'py>(
    py: Python<'py>,
    mask: &Bound<'py, PyAny>,
    connectivity: u8,
) -> PyResult<(Bound<'py, PyArray2<u32>>, usize)> {
    let connectivity = match connectivity {
        4 => Connectivity::Four,
        8 => Connectivity::Eight,
        c => return Err(PyValueError::new_err(format!("connectivity must be 4 or 8, not {c}"))),
    };
    let array = mask_array(mask, "mask")?;
    let view = match &array {
        MaskArray::Bool(a) => split(a, "mask", true, true, MaskView::Bool)?,
        MaskArray::U8(a) => split(a, "mask", true, true, MaskView::U8)?,
    };
    let view = view[0];
    let (h, w) = view.shape();
    let c = py
        .detach(|| match &view {
            MaskView::Bool(v) => ikd_metrics::label_components(&contiguous(v), w, h, connectivity),
            MaskView::U8(v) => ikd_metrics::label_components(&contiguous(v), w, h, connectivity),
        })
        .map_err(value_error)?;
    let count = c.count();
    let labels = numpy::ndarray::Array2::from_shape_vec((h, w), c.labels().to_vec())
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok((labels.into_pyarray(py), count))
}

/// Collects maps and masks batch by batch (datasets that do not fit in memory) and computes the
/// metrics at ``finish``: ``Accumulator(*, pixel_auroc=True, image_auroc=True,
/// au_pro_limits=[0.3], average_precision=True, f1_max=True, ikd_pro=False, image_score="max",
/// curve_points=1000)``. About 2 bytes per defect-free pixel and 8 per defect pixel.
#[pyclass(module = "ikd_metrics")]
struct Accumulator {
    inner: Option<RustAccumulator>,
}

impl Accumulator {
    fn inner(&mut self) -> PyResult<&mut RustAccumulator> {
        self.inner.as_mut().ok_or_else(|| {
            PyValueError::new_err("this Accumulator was finished or merged into another one")
        })
    }
}

#[pymethods]
impl Accumulator {
    #[new]
    #[pyo3(signature = (*, pixel_auroc = true, image_auroc = true, au_pro_limits = vec![0.3], average_precision = true, f1_max = true, ikd_pro = false, image_score = "max", curve_points = 1000))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        pixel_auroc: bool,
        image_auroc: bool,
        au_pro_limits: Vec<f64>,
        average_precision: bool,
        f1_max: bool,
        ikd_pro: bool,
        image_score: &str,
        curve_points: usize,
    ) -> PyResult<Self> {
        let score = match image_score {
            "max" => ImageScore::Max,
            "mean" => ImageScore::Mean,
            s => {
                return Err(PyValueError::new_err(format!(
                    "image_score must be \"max\" or \"mean\", not {s:?}"
                )))
            }
        };
        let config = MetricsConfig {
            pixel_auroc,
            image_auroc: image_auroc.then_some(score),
            au_pro_limits,
            pro_curve: if curve_points == 0 {
                CurveDetail::None
            } else {
                CurveDetail::Sampled(curve_points)
            },
            average_precision,
            f1_max,
            ikd_pro: ikd_pro.then(IkdProConfig::default),
        };
        let inner = RustAccumulator::new(config).map_err(value_error)?;
        Ok(Accumulator { inner: Some(inner) })
    }

    /// Number of images added so far.
    #[getter]
    fn images(&mut self) -> PyResult<usize> {
        Ok(self.inner()?.images())
    }

    /// Adds one (H, W) map and mask, or a batch: an (N, H, W) array or lists of (H, W) arrays.
    fn update(
        &mut self,
        py: Python<'_>,
        map: &Bound<'_, PyAny>,
        mask: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let inputs = Inputs::new(map, mask)?;
        let images = inputs.images(true)?;
        let acc = self.inner()?;
        let first = acc.images();
        let config = acc.config().clone();
        if let [(map, mask)] = images.as_slice() {
            // One image: straight into this accumulator (left as it was on error).
            return py.detach(|| update_one(acc, map, mask)).map_err(value_error);
        }
        let part = py.detach(|| accumulate(&images, &config, first)).map_err(value_error)?;
        acc.merge(part).map_err(value_error)
    }

    /// Adds everything ``other`` collected; ``other`` is empty afterwards.
    fn merge(&mut self, mut other: PyRefMut<'_, Accumulator>) -> PyResult<()> {
        let theirs = other.inner.take().ok_or_else(|| {
            PyValueError::new_err("the other Accumulator was finished or merged already")
        })?;
        let ours = self.inner()?;
        if ours.config() != theirs.config() {
            let e = value_error(MetricsError::ConfigMismatch);
            other.inner = Some(theirs);
            return Err(e);
        }
        ours.merge(theirs).map_err(value_error)
    }

    /// Computes the metrics; the accumulator cannot be used afterwards. Returns a dict:
    /// ``images``, ``defective_images``, ``pixels``, ``defect_pixels``, ``regions``,
    /// ``pixel_auroc``, ``image_auroc``, ``au_pro`` ({limit: area}), ``pro_curve`` ((fpr, pro)),
    /// ``average_precision``, ``f1_max`` (F1Max), ``ikd_pro``; None for what was not selected.
    fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let acc = self.inner.take().ok_or_else(|| {
            PyValueError::new_err("this Accumulator was finished or merged into another one")
        })?;
        let m = py.detach(|| acc.finish()).map_err(value_error)?;
        let d = PyDict::new(py);
        d.set_item("images", m.images)?;
        d.set_item("defective_images", m.defective_images)?;
        d.set_item("pixels", m.pixels)?;
        d.set_item("defect_pixels", m.defect_pixels)?;
        d.set_item("regions", m.regions)?;
        d.set_item("pixel_auroc", m.pixel_auroc)?;
        d.set_item("image_auroc", m.image_auroc)?;
        let au_pro = PyDict::new(py);
        for a in &m.au_pro {
            au_pro.set_item(a.limit, a.value)?;
        }
        d.set_item("au_pro", au_pro)?;
        d.set_item("pro_curve", m.pro_curve.map(|c| curve_arrays(py, c.fpr, c.pro)))?;
        d.set_item("average_precision", m.average_precision)?;
        d.set_item("f1_max", m.f1_max.map(F1Max::from))?;
        d.set_item("ikd_pro", m.ikd_pro.map(|p| p.value))?;
        Ok(d)
    }
}

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(pixel_auroc, m)?)?;
    m.add_function(wrap_pyfunction!(image_auroc, m)?)?;
    m.add_function(wrap_pyfunction!(au_pro, m)?)?;
    m.add_function(wrap_pyfunction!(ikd_pro, m)?)?;
    m.add_function(wrap_pyfunction!(average_precision, m)?)?;
    m.add_function(wrap_pyfunction!(f1_max, m)?)?;
    m.add_function(wrap_pyfunction!(label_components, m)?)?;
    m.add_class::<Accumulator>()?;
    m.add_class::<F1Max>()?;
    Ok(())
}
