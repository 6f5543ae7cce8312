"""MVTec AD's AU-PRO (`compute_pro` and `trapezoid` of the MVTec AD evaluation code), transcribed
for the tests and the speed script: the published code is not on this machine, so this follows it
step by step (float32 cumulative FPRs included)."""

import numpy as np
from scipy.ndimage import label


def compute_pro(anomaly_maps, ground_truth_maps):
    """The PRO curve: (fprs, pros), from (0, 0) to (1, 1)."""
    structure = np.ones((3, 3), dtype=int)
    num_ok_pixels = 0
    num_gt_regions = 0
    shape = (len(anomaly_maps), anomaly_maps[0].shape[0], anomaly_maps[0].shape[1])
    fp_changes = np.zeros(shape, dtype=np.uint32)
    assert shape[0] * shape[1] * shape[2] < np.iinfo(fp_changes.dtype).max
    pro_changes = np.zeros(shape, dtype=np.float64)
    for gt_ind, gt_map in enumerate(ground_truth_maps):
        labeled, n_components = label(gt_map, structure)
        num_gt_regions += n_components
        ok_mask = labeled == 0
        num_ok_pixels += np.sum(ok_mask)
        fp_changes[gt_ind, ok_mask] = 1
        for k in range(n_components):
            region_mask = labeled == (k + 1)
            region_size = np.sum(region_mask)
            pro_changes[gt_ind, region_mask] = 1.0 / region_size
    anomaly_scores_flat = np.array(anomaly_maps).ravel()
    fp_changes = fp_changes.ravel()
    pro_changes = pro_changes.ravel()
    sort_idxs = np.argsort(anomaly_scores_flat).astype(np.uint32)[::-1]
    np.take(anomaly_scores_flat, sort_idxs, out=anomaly_scores_flat)
    anomaly_scores_sorted = anomaly_scores_flat
    np.take(fp_changes, sort_idxs, out=fp_changes)
    fp_changes_sorted = fp_changes
    np.take(pro_changes, sort_idxs, out=pro_changes)
    pro_changes_sorted = pro_changes
    del sort_idxs
    np.cumsum(fp_changes_sorted, out=fp_changes_sorted)
    fp_changes_sorted = fp_changes_sorted.astype(np.float32, copy=False)
    np.divide(fp_changes_sorted, num_ok_pixels, out=fp_changes_sorted)
    fprs = fp_changes_sorted
    np.cumsum(pro_changes_sorted, out=pro_changes_sorted)
    np.divide(pro_changes_sorted, num_gt_regions, out=pro_changes_sorted)
    pros = pro_changes_sorted
    keep_mask = np.append(np.diff(anomaly_scores_sorted) != 0, np.True_)
    del anomaly_scores_sorted
    fprs = fprs[keep_mask]
    pros = pros[keep_mask]
    del keep_mask
    np.clip(fprs, a_min=None, a_max=1.0, out=fprs)
    np.clip(pros, a_min=None, a_max=1.0, out=pros)
    zero = np.array([0.0])
    one = np.array([1.0])
    fprs = np.concatenate((zero, fprs, one))
    pros = np.concatenate((zero, pros, one))
    return fprs, pros


def trapezoid(x, y, x_max=None):
    """Area under (x, y) up to x_max, interpolating linearly at x_max."""
    x = np.array(x)
    y = np.array(y)
    finite_mask = np.logical_and(np.isfinite(x), np.isfinite(y))
    x = x[finite_mask]
    y = y[finite_mask]
    correction = 0.0
    if x_max is not None:
        if x_max not in x:
            ins = np.searchsorted(x, x_max)
            assert 0 < ins < len(x)
            y_interp = y[ins - 1] + ((y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1]))
            correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1])
        mask = x <= x_max
        x = x[mask]
        y = y[mask]
    return np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction


def au_pro(anomaly_maps, ground_truth_maps, limit=0.3):
    """MVTec AD's normalised AU-PRO up to FPR `limit`."""
    fprs, pros = compute_pro(anomaly_maps, ground_truth_maps)
    return trapezoid(fprs, pros, x_max=limit) / limit
