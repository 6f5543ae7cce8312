"""Parity: the shared fixtures (scikit-learn's and MVTec AD's values), scikit-learn itself, SciPy's
labelling and MVTec AD's AU-PRO on random inputs, to the Rust tests' tolerances (AUROC, AP
within 1e-9, AU-PRO within 1e-6)."""

import numpy as np
import pytest
from scipy.ndimage import label
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

import ikd_metrics
import mvtec_reference
from conftest import FIXTURES, fixture_cases

CASES = fixture_cases()


def test_the_fixtures_are_there():
    assert len(CASES) >= 3, f"expected the metrics fixtures in {FIXTURES}"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_fixture_case_is_reproduced(case):
    name, scores, masks, expected = case
    assert abs(ikd_metrics.pixel_auroc(scores, masks) - expected["pixel_auroc"]) < 1e-9, name
    image = ikd_metrics.image_auroc(scores.max(axis=(1, 2)), masks.any(axis=(1, 2)))
    assert abs(image - expected["image_auroc_max"]) < 1e-9, name
    limits = {float(k[len("au_pro_") :]): v for k, v in expected.items() if k.startswith("au_pro_")}
    assert limits
    acc = ikd_metrics.Accumulator(au_pro_limits=sorted(limits))
    for s, m in zip(scores, masks):
        acc.update(s, m)
    m = acc.finish()
    assert abs(m["pixel_auroc"] - expected["pixel_auroc"]) < 1e-9
    assert abs(m["image_auroc"] - expected["image_auroc_max"]) < 1e-9
    for limit, value in limits.items():
        area, (fpr, pro) = ikd_metrics.au_pro(scores, masks, limit=limit)
        assert abs(area - value) < 1e-6, (name, limit, area, value)
        assert abs(m["au_pro"][limit] - value) < 1e-6, (name, limit)
        assert fpr[0] == 0 and pro[0] == 0 and fpr[-1] == 1 and pro[-1] == 1
        assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(pro) >= -1e-12)


def random_images(rng, sizes, levels):
    """Maps quantised to `levels` values (many ties) with rectangular defects scored higher."""
    maps, masks = [], []
    for h, w in sizes:
        m = np.zeros((h, w), dtype=bool)
        for _ in range(rng.integers(0, 3)):
            y, x = rng.integers(0, h), rng.integers(0, w)
            m[y : y + rng.integers(1, 6), x : x + rng.integers(1, 6)] = True
        s = rng.integers(0, levels, size=(h, w)).astype(np.float32) / levels
        s[m] += rng.random() * 0.5
        maps.append(s.astype(np.float32))
        masks.append(m)
    return maps, masks


@pytest.mark.parametrize("seed", range(6))
def test_scikit_learn_on_images_of_different_sizes(seed):
    rng = np.random.default_rng(seed)
    sizes = [(int(rng.integers(3, 20)), int(rng.integers(3, 20))) for _ in range(7)]
    maps, masks = random_images(rng, sizes, levels=int(rng.choice([4, 16, 1000])))
    masks[0][0, 0] = True  # both classes
    masks[1][:] = False
    y = np.concatenate([m.ravel() for m in masks])
    s = np.concatenate([m.ravel() for m in maps])
    assert abs(ikd_metrics.pixel_auroc(maps, masks) - roc_auc_score(y, s)) < 1e-9
    assert abs(ikd_metrics.average_precision(maps, masks) - average_precision_score(y, s)) < 1e-9
    precision, recall, thresholds = precision_recall_curve(y, s)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-300)
    best = ikd_metrics.f1_max(maps, masks)
    assert abs(best.f1 - f1[:-1].max()) < 1e-9
    assert best.threshold == thresholds[np.argmax(f1[:-1])]
    labels = np.array([m.any() for m in masks])
    scores = np.array([m.max() for m in maps], dtype=np.float64)
    assert abs(ikd_metrics.image_auroc(scores, labels) - roc_auc_score(labels, scores)) < 1e-9
    # uint8 masks and float64 maps holding float32 values: the same numbers
    as_u8 = [m.astype(np.uint8) * 255 for m in masks]
    as_f64 = [m.astype(np.float64) for m in maps]
    assert ikd_metrics.pixel_auroc(as_f64, as_u8) == ikd_metrics.pixel_auroc(maps, masks)


@pytest.mark.parametrize("seed", range(4))
def test_mvtec_au_pro_on_random_stacks(seed):
    rng = np.random.default_rng(100 + seed)
    maps, masks = random_images(rng, [(24, 20)] * 6, levels=int(rng.choice([8, 64, 100000])))
    masks[0][3:6, 3:7] = True
    maps, masks = np.stack(maps), np.stack(masks)
    for limit in (0.05, 0.3, 1.0):
        expected = mvtec_reference.au_pro(list(maps), list(masks), limit)
        area, _ = ikd_metrics.au_pro(maps, masks, limit=limit)
        assert abs(area - expected) < 1e-6, (limit, area, expected)


def test_the_full_curve_is_mvtecs_curve():
    rng = np.random.default_rng(7)
    maps, masks = random_images(rng, [(16, 16)] * 4, levels=1000)
    masks[0][2:5, 2:5] = True
    fpr_ref, pro_ref = mvtec_reference.compute_pro(maps, masks)
    area, (fpr, pro) = ikd_metrics.au_pro(maps, masks, limit=1.0, full_curve=True)
    # Points where only the FPR moves are left out of the full curve; every reference point lies
    # on it.
    for f, p in zip(fpr_ref, pro_ref):
        assert abs(np.interp(f, fpr, pro) - p) < 1e-6 or p in pro[np.isclose(fpr, f, atol=1e-6)]


@pytest.mark.parametrize("connectivity", [4, 8])
def test_label_components_numbers_like_scipy(connectivity):
    rng = np.random.default_rng(connectivity)
    mask = rng.random((40, 33)) < 0.45
    structure = np.ones((3, 3)) if connectivity == 8 else None
    expected, count = label(mask, structure)
    labels, n = ikd_metrics.label_components(mask, connectivity=connectivity)
    assert n == count
    assert labels.dtype == np.uint32 and labels.shape == mask.shape
    np.testing.assert_array_equal(labels, expected)
