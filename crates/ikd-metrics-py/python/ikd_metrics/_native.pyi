"""Type stubs of ikd_metrics' extension module (the functions are re-exported by ikd_metrics)."""

from typing import Dict, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

#: Anomaly maps: one float32/float64 array of shape (N, H, W), or a list/tuple of (H, W) arrays
#: (sizes may differ). float64 is rounded to float32.
Maps = Union[npt.NDArray[np.float32], npt.NDArray[np.float64], Sequence[npt.NDArray[np.floating]]]
#: Ground-truth masks of the same shapes: bool or uint8, nonzero = defect.
Masks = Union[npt.NDArray[np.bool_], npt.NDArray[np.uint8], Sequence[npt.NDArray[np.generic]]]
#: A curve as two float64 arrays of equal length: (fpr, pro).
CurveArrays = Tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]

def pixel_auroc(maps: Maps, masks: Masks) -> float:
    """Pixel AUROC over every pixel of every image.

    Equal to scikit-learn's ``roc_auc_score(masks.ravel() != 0, maps.ravel())`` (every distinct
    score a threshold, ties as the trapezoid through the tied block), computed exactly.

    Raises:
        ValueError: shapes differ (naming the image), a score is NaN or infinite (naming the image
            and pixel), or there is no defect or no defect-free pixel.
        TypeError: a map or mask is not an array of a supported dtype.
    """

def image_auroc(
    scores: Union[npt.NDArray[np.float64], npt.NDArray[np.float32]],
    labels: Union[npt.NDArray[np.bool_], npt.NDArray[np.uint8]],
) -> float:
    """AUROC of one score per image against one label per image (True/nonzero = defective).

    Equal to scikit-learn's ``roc_auc_score(labels, scores)``.

    Raises:
        ValueError: lengths differ, a score is not finite (naming the image), or only one class.
    """

def au_pro(
    maps: Maps, masks: Masks, limit: float = 0.3, full_curve: bool = False
) -> Tuple[float, CurveArrays]:
    """MVTec AD's AU-PRO up to FPR ``limit``, normalised by the limit, and the PRO curve.

    Follows MVTec AD's ``compute_pro`` + ``trapezoid``: 8-connected regions, FPR over all
    defect-free pixels, curve from (0, 0) to (1, 1), linear interpolation at the limit.

    Returns:
        ``(area, (fpr, pro))``: the curve is sampled to about 2000 exact vertices, or every vertex
        with ``full_curve=True`` (the area is always computed on the exact curve).

    Raises:
        ValueError: as :func:`pixel_auroc`, or ``limit`` not in (0, 1].
    """

def ikd_pro(
    maps: Maps, masks: Masks, thresholds: int = 200, max_fpr: float = 0.3
) -> Tuple[float, CurveArrays]:
    """IKD's published PRO (``cal_pro_metric`` of the IKD repository).

    ``thresholds`` equally spaced thresholds between the global minimum and maximum score, regions
    with their holes filled, FPR <= ``max_fpr`` kept and rescaled to [0, 1], trapezoid area.

    Returns:
        ``(area, (fpr, pro))`` at the thresholds, highest threshold first (FPR not rescaled).

    Raises:
        ValueError: as :func:`pixel_auroc`, or every kept FPR is equal (the Python code's NaN).
    """

def average_precision(maps: Maps, masks: Masks) -> float:
    """Pixel average precision, equal to scikit-learn's ``average_precision_score``.

    Raises:
        ValueError: as :func:`pixel_auroc`.
    """

class F1Max:
    """The best pixel F1 over all thresholds (``score >= threshold`` is a defect)."""

    @property
    def f1(self) -> float:
        """The best F1."""
    @property
    def threshold(self) -> float:
        """The lowest threshold reaching it (a float32 score)."""
    @property
    def precision(self) -> float:
        """Precision at that threshold."""
    @property
    def recall(self) -> float:
        """Recall at that threshold."""

def f1_max(maps: Maps, masks: Masks) -> F1Max:
    """The best pixel F1 and the threshold that reaches it.

    Raises:
        ValueError: as :func:`pixel_auroc`.
    """

def label_components(
    mask: Union[npt.NDArray[np.bool_], npt.NDArray[np.uint8]], connectivity: int = 8
) -> Tuple[npt.NDArray[np.uint32], int]:
    """Connected components of one (H, W) mask, numbered like ``scipy.ndimage.label``.

    Args:
        connectivity: 8 (diagonal neighbours join, as MVTec AD's evaluation) or 4.

    Returns:
        ``(labels, count)``: labels 0 for background, 1..count for the regions in raster order of
        their first pixel.
    """

class Accumulator:
    """Collects maps and masks batch by batch (datasets that do not fit in memory).

    Memory is about 2 bytes per defect-free pixel and 8 per defect pixel. Accumulators filled
    separately (other processes' results cannot be sent; other threads' can) are combined with
    :meth:`merge`; the result does not depend on the order of images or how they were split.

    Args:
        pixel_auroc, image_auroc, average_precision, f1_max, ikd_pro: which metrics to compute
            (IKD's PRO is off by default).
        au_pro_limits: FPR limits of the AU-PRO values (each in (0, 1]).
        image_score: ``"max"`` (MVTec AD) or ``"mean"`` of each map for image AUROC.
        curve_points: about how many PRO-curve steps to keep (0: no curve).
    """

    def __init__(
        self,
        *,
        pixel_auroc: bool = True,
        image_auroc: bool = True,
        au_pro_limits: Sequence[float] = (0.3,),
        average_precision: bool = True,
        f1_max: bool = True,
        ikd_pro: bool = False,
        image_score: str = "max",
        curve_points: int = 1000,
    ) -> None: ...
    @property
    def images(self) -> int:
        """Number of images added so far (merged ones included)."""
    def update(self, map: Maps, mask: Masks) -> None:
        """Adds one (H, W) map and mask, or a batch ((N, H, W) arrays or lists of (H, W) arrays).

        On error nothing is added. Raises ``ValueError``/``TypeError`` naming the image (numbered
        over all images this accumulator has seen).
        """
    def merge(self, other: "Accumulator") -> None:
        """Adds everything ``other`` collected; ``other`` cannot be used afterwards.

        Raises:
            ValueError: the two accumulators compute different metrics, or one was finished.
        """
    def finish(self) -> Dict[str, object]:
        """Computes the metrics; the accumulator cannot be used afterwards.

        Returns a dict: ``images``, ``defective_images``, ``pixels``, ``defect_pixels``,
        ``regions``, ``pixel_auroc``, ``image_auroc``, ``au_pro`` (``{limit: area}``),
        ``pro_curve`` (``(fpr, pro)`` or None), ``average_precision``, ``f1_max`` (:class:`F1Max`)
        and ``ikd_pro``; a metric not selected is None.

        Raises:
            ValueError: no image, no defect or no defect-free pixel, one class only for image
                AUROC.
        """
