"""Bad input: a ValueError (or a TypeError for an unsupported type) that names the image, never a
crash; layouts NumPy users pass (views, Fortran order, float64, uint8) give the same numbers."""

import numpy as np
import pytest

import ikd_metrics


def stack(n=4, h=8, w=6):
    rng = np.random.default_rng(1)
    maps = rng.random((n, h, w), dtype=np.float32)
    masks = np.zeros((n, h, w), dtype=bool)
    masks[0, 2:4, 1:3] = True
    masks[2, 5, 5] = True
    return maps, masks


FUNCTIONS = [
    ikd_metrics.pixel_auroc,
    ikd_metrics.average_precision,
    ikd_metrics.f1_max,
    lambda m, k: ikd_metrics.au_pro(m, k, limit=0.3),
    lambda m, k: ikd_metrics.ikd_pro(m, k),
]


@pytest.mark.parametrize("f", FUNCTIONS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_score_names_the_image_and_pixel(f, bad):
    maps, masks = stack()
    maps[2, 3, 4] = bad
    with pytest.raises(ValueError, match=r"image 2: the score at x 4, y 3 is"):
        f(maps, masks)
    as_list = list(maps.astype(np.float64))
    with pytest.raises(ValueError, match=r"image 2: .*x 4, y 3"):
        f(as_list, list(masks))


def test_shapes_that_differ_name_the_image():
    maps, masks = stack()
    items = list(maps)
    items[3] = items[3][:, :5]
    with pytest.raises(ValueError, match=r"image 3: the anomaly map is \(8, 5\).*mask is \(8, 6\)"):
        ikd_metrics.pixel_auroc(items, list(masks))
    with pytest.raises(ValueError, match=r"image 0: the anomaly map is \(8, 6\).*\(6, 8\)"):
        ikd_metrics.pixel_auroc(maps, masks.transpose(0, 2, 1))
    with pytest.raises(ValueError, match="4 anomaly maps but 3 masks"):
        ikd_metrics.pixel_auroc(list(maps), list(masks)[:3])
    with pytest.raises(ValueError, match="4 anomaly maps but 3 masks"):
        ikd_metrics.pixel_auroc(maps, masks[:3])
    with pytest.raises(ValueError, match=r"maps: expected a 3-D \(N, H, W\) array"):
        ikd_metrics.pixel_auroc(maps[0], masks[0])
    with pytest.raises(ValueError, match=r"image 1: expected a 2-D"):
        ikd_metrics.pixel_auroc([maps[0], maps[1:3]], [masks[0], masks[1]])
    with pytest.raises(ValueError, match=r"image 0: the image is empty"):
        ikd_metrics.pixel_auroc(np.zeros((2, 0, 3), np.float32), np.zeros((2, 0, 3), bool))


def test_missing_classes_and_empty_input():
    maps, masks = stack()
    with pytest.raises(ValueError, match="none of the 4 images has a defect pixel"):
        ikd_metrics.pixel_auroc(maps, np.zeros_like(masks))
    with pytest.raises(ValueError, match="none of the 4 images has a defect-free pixel"):
        ikd_metrics.au_pro(maps, np.ones_like(masks))
    with pytest.raises(ValueError, match="no image was given"):
        ikd_metrics.pixel_auroc([], [])
    with pytest.raises(ValueError, match="image AUROC needs images with and without defects"):
        ikd_metrics.image_auroc(np.array([0.5, 0.7]), np.array([True, True]))
    with pytest.raises(ValueError, match="image 1: the image score NaN"):
        ikd_metrics.image_auroc(np.array([0.5, np.nan]), np.array([True, False]))
    with pytest.raises(ValueError, match="3 against 2"):
        ikd_metrics.image_auroc(np.array([0.5, 0.1, 0.2]), np.array([True, False]))
    acc = ikd_metrics.Accumulator()
    acc.update(maps[0], masks[0])
    with pytest.raises(ValueError, match="image AUROC needs"):
        acc.finish()


def test_unsupported_types_are_type_errors():
    maps, masks = stack()
    with pytest.raises(TypeError, match="maps: the anomaly map must be a NumPy array of float32 or float64, not an array of dtype int64"):
        ikd_metrics.pixel_auroc(maps.astype(np.int64), masks)
    with pytest.raises(TypeError, match="image 1: the mask must be a NumPy array of bool or uint8"):
        ikd_metrics.pixel_auroc(list(maps[:2]), [masks[0], masks[1].astype(np.float32)])
    with pytest.raises(TypeError, match="both arrays or both lists"):
        ikd_metrics.pixel_auroc(list(maps), masks)
    with pytest.raises(TypeError, match="not a str"):
        ikd_metrics.pixel_auroc("maps", masks)
    with pytest.raises(TypeError, match="labels must be a 1-D NumPy array"):
        ikd_metrics.image_auroc(np.array([0.5, 0.1]), [True, False])


def test_invalid_settings():
    maps, masks = stack()
    with pytest.raises(ValueError, match="invalid metrics configuration"):
        ikd_metrics.au_pro(maps, masks, limit=0.0)
    with pytest.raises(ValueError, match="connectivity must be 4 or 8"):
        ikd_metrics.label_components(masks[0], connectivity=6)
    with pytest.raises(ValueError, match="image_score must be"):
        ikd_metrics.Accumulator(image_score="median")


def test_a_failed_update_adds_nothing_and_used_accumulators_say_so():
    maps, masks = stack()
    acc = ikd_metrics.Accumulator()
    acc.update(maps[:2], masks[:2])
    bad = maps[2:].copy()
    bad[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="image 3: the score at x 0, y 0"):
        acc.update(bad, masks[2:])
    assert acc.images == 2
    acc.update(maps[2:], masks[2:])
    other = ikd_metrics.Accumulator(au_pro_limits=[0.1])
    with pytest.raises(ValueError, match="different configurations"):
        acc.merge(other)
    other.update(maps[0], masks[0])  # still usable after the refused merge
    result = acc.finish()
    assert result["images"] == 4
    with pytest.raises(ValueError, match="was finished or merged"):
        acc.update(maps[0], masks[0])
    with pytest.raises(ValueError, match="was finished or merged"):
        acc.finish()
    full = ikd_metrics.Accumulator(au_pro_limits=[0.1])
    full.merge(other)
    with pytest.raises(ValueError, match="was finished or merged"):
        full.merge(other)


def test_views_fortran_order_and_dtypes_give_the_same_numbers():
    rng = np.random.default_rng(3)
    maps = rng.random((5, 20, 30), dtype=np.float32)
    masks = rng.random((5, 20, 30)) < 0.2
    expected = ikd_metrics.pixel_auroc(maps[:, ::2, 1::3].copy(), masks[:, ::2, 1::3].copy())
    assert ikd_metrics.pixel_auroc(maps[:, ::2, 1::3], masks[:, ::2, 1::3]) == expected
    f_maps = np.asfortranarray(maps)
    assert ikd_metrics.pixel_auroc(f_maps, masks) == ikd_metrics.pixel_auroc(maps, masks)
    assert ikd_metrics.pixel_auroc(list(f_maps), list(masks.view(np.uint8))) == ikd_metrics.pixel_auroc(maps, masks)
    # float64 is rounded to float32 first
    m64 = maps.astype(np.float64) + 1e-12
    assert ikd_metrics.pixel_auroc(m64, masks) == ikd_metrics.pixel_auroc(m64.astype(np.float32), masks)


def test_results_have_the_documented_types():
    maps, masks = stack()
    area, (fpr, pro) = ikd_metrics.au_pro(maps, masks)
    assert isinstance(area, float) and fpr.dtype == np.float64 and pro.shape == fpr.shape
    value, (fpr, pro) = ikd_metrics.ikd_pro(maps, masks, thresholds=50)
    assert isinstance(value, float) and len(fpr) == 50
    best = ikd_metrics.f1_max(maps, masks)
    assert "F1Max(f1=" in repr(best) and 0 < best.recall <= 1
    acc = ikd_metrics.Accumulator(ikd_pro=True)
    acc.update(list(maps), list(masks))
    m = acc.finish()
    assert set(m) == {
        "images", "defective_images", "pixels", "defect_pixels", "regions", "pixel_auroc",
        "image_auroc", "au_pro", "pro_curve", "average_precision", "f1_max", "ikd_pro",
    }
    assert m["pixels"] == maps.size and m["defective_images"] == 2 and m["regions"] == 2
    assert list(m["au_pro"]) == [0.3] and isinstance(m["ikd_pro"], float)
    assert ikd_metrics.__version__
