//! The building blocks shared by the loss and the anomaly map: per-pixel L2 normalisation, the
//! per-pixel distance d, the anomaly map, and the context-similarity loss in its C×C form.

use candle_core::{DType, Tensor};

use crate::{DistillError, Result};

/// The ε of PyTorch's `F.normalize` (which the published code uses): x / max(‖x‖, ε).
pub const NORM_EPS: f64 = 1e-12;

fn input_err(what: impl Into<String>, msg: impl Into<String>) -> DistillError {
    DistillError::Input { what: what.into(), msg: msg.into() }
}

/// Checks that `x` is a non-empty (N,C,H,W) floating-point map; half types are widened to F32.
fn as_feature_map(x: &Tensor, what: &str) -> Result<Tensor> {
    let dims = x.dims();
    if dims.len() != 4 {
        return Err(input_err(
            what,
            format!("expected a (N, C, H, W) feature map, got shape {dims:?}"),
        ));
    }
    if dims.contains(&0) {
        return Err(input_err(what, format!("empty feature map of shape {dims:?}")));
    }
    match x.dtype() {
        DType::F32 | DType::F64 => Ok(x.clone()),
        DType::F16 | DType::BF16 => Ok(x.to_dtype(DType::F32)?),
        other => Err(input_err(
            what,
            format!("expected a floating-point feature map, got dtype {other:?}"),
        )),
    }
}

/// Checks a teacher/student pair: both (N,C,H,W), same shape, dtype and device.
pub(crate) fn check_pair(level: usize, t: &Tensor, s: &Tensor) -> Result<(Tensor, Tensor)> {
    let t = as_feature_map(t, &format!("teacher level {level}"))?;
    let s = as_feature_map(s, &format!("student level {level}"))?;
    let what = format!("level {level}");
    if t.dims() != s.dims() {
        return Err(input_err(
            what,
            format!("teacher shape {:?} differs from student shape {:?}", t.dims(), s.dims()),
        ));
    }
    if t.dtype() != s.dtype() {
        return Err(input_err(
            what,
            format!("teacher dtype {:?} differs from student dtype {:?}", t.dtype(), s.dtype()),
        ));
    }
    if !t.device().same_device(s.device()) {
        return Err(input_err(
            what,
            format!(
                "teacher on {:?}, student on {:?}",
                t.device().location(),
                s.device().location()
            ),
        ));
    }
    Ok((t, s))
}

/// L2-normalises a (N,C,H,W) map over C at every pixel, as PyTorch's
/// `F.normalize(x, p=2, dim=1)`: x / max(‖x‖₂, 1e-12).
///
/// It is computed as x / sqrt(max(Σx², 1e-24)), which has the same value and the same gradient
/// whenever ‖x‖ ≠ 1e-12 and, unlike a literal transcription, no NaN gradient at an all-zero pixel.
///
/// ```
/// use candle_core::{Device, Tensor};
/// // Channel 0 is (3, 0), channel 1 is (4, 0) over the two pixels.
/// let x = Tensor::new(&[3f32, 0.0, 4.0, 0.0], &Device::Cpu)?.reshape((1, 2, 1, 2))?;
/// let y = ikd_distill::l2_normalize(&x)?;
/// // pixel 0 is (3, 4) → (0.6, 0.8); pixel 1 is all zero and stays zero.
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, vec![0.6, 0.0, 0.8, 0.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let x = as_feature_map(x, "feature map")?;
    normalize_unchecked(&x)
}

/// `x` divided by its L2 norm (at least [`NORM_EPS`]) along dimension 1: the channels of a
/// (N,C,H,W) map, or of its [`pixel_rows`].
fn normalize_unchecked(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(1)?.maximum(NORM_EPS * NORM_EPS)?.sqrt()?;
    Ok(x.broadcast_div(&norm)?)
}

/// Normalises both maps (the teacher detached) and returns (T̂, Ŝ, d): T̂ and Ŝ as pixel rows
/// ([`pixel_rows`], (N·H·W, C)), d = Σ_c (T̂ − Ŝ)² of shape (N,H,W). The one place where the loss
/// and the anomaly map compute d. The maps turn into rows first, so that every sum over C runs
/// along contiguous memory (over C of a (N,C,H,W) map, candle's sums stride through it, on one
/// thread: 5 % of a hrnet_w18_small training step).
pub(crate) fn normalized_distance(
    level: usize,
    teacher: &Tensor,
    student: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (t, s) = check_pair(level, teacher, student)?;
    let (n, _, h, w) = t.dims4()?;
    let t_hat = normalize_unchecked(&pixel_rows(&t.detach())?)?;
    let s_hat = normalize_unchecked(&pixel_rows(&s)?)?;
    let d = (&t_hat - &s_hat)?.sqr()?.sum(1)?.reshape((n, h, w))?;
    Ok((t_hat, s_hat, d))
}

/// The per-pixel distance of IKD for one level: d = Σ_c (T̂ − Ŝ)², with T̂, Ŝ the teacher and
/// student maps L2-normalised over C ([`l2_normalize`]). Input (N,C,H,W), output (N,H,W), in
/// `[0, 4]`. The teacher is detached: gradients reach the student only.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let t = Tensor::new(&[1f32, 0.0], &Device::Cpu)?.reshape((1, 2, 1, 1))?;
/// let s = Tensor::new(&[0f32, 5.0], &Device::Cpu)?.reshape((1, 2, 1, 1))?;
/// let d = ikd_distill::pixel_distance(&t, &s)?;
/// assert_eq!(d.dims(), &[1, 1, 1]);
/// assert_eq!(d.flatten_all()?.to_vec1::<f32>()?, vec![2.0]); // orthogonal unit vectors
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pixel_distance(teacher: &Tensor, student: &Tensor) -> Result<Tensor> {
    let (_, _, d) = normalized_distance(0, teacher, student)?;
    Ok(d)
}

/// The anomaly map of IKD: the product over `levels` of the per-pixel distance d
/// ([`pixel_distance`], the same code as the loss), shape (N,H,W) at feature resolution.
///
/// `teacher` and `student` hold the IKD feature maps indexed by level (as given to
/// [`crate::IkdLoss::forward`]); the selected levels must share N, H and W. Resizing the map to the
/// image is left to the caller.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let dev = Device::Cpu;
/// let t: Vec<Tensor> = (0..4).map(|_| Tensor::randn(0f32, 1.0, (2, 8, 4, 4), &dev)).collect::<Result<_, _>>()?;
/// let s: Vec<Tensor> = (0..4).map(|_| Tensor::randn(0f32, 1.0, (2, 8, 4, 4), &dev)).collect::<Result<_, _>>()?;
/// let map = ikd_distill::anomaly_map(&t, &s, &[1, 2])?;
/// assert_eq!(map.dims(), &[2, 4, 4]);
/// let d1 = ikd_distill::pixel_distance(&t[1], &s[1])?;
/// let d2 = ikd_distill::pixel_distance(&t[2], &s[2])?;
/// let diff = (map - (d1 * d2)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
/// assert_eq!(diff, 0.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn anomaly_map(teacher: &[Tensor], student: &[Tensor], levels: &[usize]) -> Result<Tensor> {
    if levels.is_empty() {
        return Err(DistillError::Config("anomaly_map: levels is empty".into()));
    }
    let mut map: Option<Tensor> = None;
    for &level in levels {
        let (t, s) = level_pair(teacher, student, level)?;
        let (_, _, d) = normalized_distance(level, t, s)?;
        map = Some(match map {
            None => d,
            Some(m) => {
                if m.dims() != d.dims() {
                    return Err(input_err(
                        format!("level {level}"),
                        format!(
                            "distance map of shape {:?} does not match the other levels' {:?}: \
                             the levels of an anomaly map must share N, H and W",
                            d.dims(),
                            m.dims()
                        ),
                    ));
                }
                (m * d)?
            }
        });
    }
    map.ok_or_else(|| DistillError::Config("anomaly_map: levels is empty".into()))
}

/// The context-similarity loss of IKD for K feature vectors: the mean over all K² pairs (i, j) of
/// (Qt_i·Qt_j − Qs_i·Qs_j)², i.e. ‖QtQtᵀ − QsQsᵀ‖²_F / K², for `qt` and `qs` of shape (K, C).
///
/// It never forms the K×K Gram matrices of the published code: it uses
/// ‖QtQtᵀ − QsQsᵀ‖²_F = ‖QtᵀQt‖²_F + ‖QsᵀQs‖²_F − 2‖QtᵀQs‖²_F, three C×C matrices, so time is
/// O(K·C²) and extra memory O(C²). The three terms nearly cancel when teacher and student agree,
/// so they are computed in f64 (inputs are widened); the result is a scalar F64 tensor with
/// gradients to whichever of `qt`, `qs` is tracked.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let dev = Device::Cpu;
/// let qt = Tensor::new(&[[1f32, 0.0], [0.0, 1.0]], &dev)?;
/// let qs = Tensor::new(&[[1f32, 0.0], [1.0, 0.0]], &dev)?;
/// // Gt = I, Gs = all ones: the two off-diagonal pairs differ by 1, so the mean is 2/4.
/// let l = ikd_distill::context_similarity(&qt, &qs)?.to_scalar::<f64>()?;
/// assert!((l - 0.5).abs() < 1e-12);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn context_similarity(qt: &Tensor, qs: &Tensor) -> Result<Tensor> {
    let (k, c) = qt.dims2().map_err(|_| {
        input_err("context_similarity qt", format!("expected (K, C), got shape {:?}", qt.dims()))
    })?;
    if qs.dims() != qt.dims() {
        return Err(input_err(
            "context_similarity qs",
            format!("shape {:?} differs from qt's {:?}", qs.dims(), qt.dims()),
        ));
    }
    if k == 0 || c == 0 {
        return Err(input_err(
            "context_similarity",
            format!("no feature vectors: shape {:?}", qt.dims()),
        ));
    }
    let qt = qt.to_dtype(DType::F64)?;
    let qs = qs.to_dtype(DType::F64)?;
    let qtt = qt.t()?;
    let a = qtt.matmul(&qt)?; // C×C
    let b = qs.t()?.matmul(&qs)?; // C×C
    let x = qtt.matmul(&qs)?; // C×C
    let sq = |m: &Tensor| -> Result<Tensor> { Ok(m.sqr()?.sum_all()?) };
    let total = ((sq(&a)? + sq(&b)?)? - sq(&x)?.affine(2.0, 0.0)?)?;
    let kk = (k as f64) * (k as f64);
    Ok(total.affine(1.0 / kk, 0.0)?)
}

/// Rows of a (N,C,H,W) map as a (N·H·W, C) matrix, row index n·H·W + y·W + x (the order of
/// `d.flatten_all()`).
pub(crate) fn pixel_rows(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    Ok(x.permute((0, 2, 3, 1))?.reshape((n * h * w, c))?)
}

/// The teacher and student maps of `level`, or [`DistillError::MissingLevel`].
pub(crate) fn level_pair<'a>(
    teacher: &'a [Tensor],
    student: &'a [Tensor],
    level: usize,
) -> Result<(&'a Tensor, &'a Tensor)> {
    match (teacher.get(level), student.get(level)) {
        (Some(t), Some(s)) => Ok((t, s)),
        _ => Err(DistillError::MissingLevel {
            level,
            teacher: teacher.len(),
            student: student.len(),
        }),
    }
}
