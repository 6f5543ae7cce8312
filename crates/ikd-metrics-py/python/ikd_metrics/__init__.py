"""Exact, fast anomaly-segmentation metrics for NumPy arrays.

The metrics of the Rust crate ikd-metrics: pixel AUROC and average precision equal to
scikit-learn's, AU-PRO equal to MVTec AD's evaluation code, IKD's published PRO, F1-max and
connected components. Maps are float32 or float64 ``(N, H, W)`` arrays or lists of ``(H, W)``
arrays of any sizes (float64 is rounded to float32); masks are bool or uint8 (nonzero = defect)
of the same shapes. The computation runs in Rust on all cores with the GIL released. Bad input
raises ``ValueError`` (or ``TypeError`` for an unsupported dtype) naming the image.
"""

from ._native import (
    Accumulator,
    F1Max,
    __version__,
    au_pro,
    average_precision,
    f1_max,
    ikd_pro,
    image_auroc,
    label_components,
    pixel_auroc,
)

__all__ = [
    "Accumulator",
    "F1Max",
    "__version__",
    "au_pro",
    "average_precision",
    "f1_max",
    "ikd_pro",
    "image_auroc",
    "label_components",
    "pixel_auroc",
]
