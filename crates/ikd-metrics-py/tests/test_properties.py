"""Properties (hypothesis): increasing transforms of the scores, the order of the images and how
the images are split between accumulators change no metric."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import ikd_metrics


@st.composite
def datasets(draw):
    """3 to 8 images of small integer scores (0..15, many ties) of varied sizes, with at least one
    defect and one defect-free pixel."""
    n = draw(st.integers(3, 8))
    maps, masks = [], []
    for _ in range(n):
        h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
        maps.append(draw(arrays(np.int64, (h, w), elements=st.integers(0, 15))))
        masks.append(draw(arrays(np.bool_, (h, w))))
    masks[0].flat[0] = True
    masks[1].flat[0] = False
    return maps, masks


def all_metrics(maps, masks):
    acc = ikd_metrics.Accumulator(au_pro_limits=[0.05, 0.3, 1.0], image_auroc=False, curve_points=0)
    acc.update(maps, masks)
    m = acc.finish()
    return m


def close(a, b, tol=1e-12):
    assert abs(a["pixel_auroc"] - b["pixel_auroc"]) < tol
    assert abs(a["average_precision"] - b["average_precision"]) < tol
    assert abs(a["f1_max"].f1 - b["f1_max"].f1) < tol
    for limit, value in a["au_pro"].items():
        assert abs(value - b["au_pro"][limit]) < tol, limit


@given(datasets(), st.lists(st.integers(1, 40), min_size=16, max_size=16))
def test_increasing_transforms_change_nothing(data, steps):
    maps, masks = data
    # A strictly increasing map of 0..15, exact in float32.
    table = np.cumsum(np.array(steps, dtype=np.float64)) - 7.5
    before = all_metrics([m.astype(np.float32) for m in maps], masks)
    after = all_metrics([table[m].astype(np.float32) for m in maps], masks)
    close(before, after)
    # the F1 threshold moves with the scores
    assert after["f1_max"].threshold == np.float32(table[int(before["f1_max"].threshold)])


@given(datasets(), st.randoms(use_true_random=False))
def test_image_order_changes_nothing(data, rnd):
    maps, masks = data
    maps = [m.astype(np.float32) for m in maps]
    order = list(range(len(maps)))
    rnd.shuffle(order)
    close(all_metrics(maps, masks), all_metrics([maps[i] for i in order], [masks[i] for i in order]))


@given(datasets(), st.lists(st.integers(0, 8), min_size=1, max_size=4))
def test_any_split_merged_equals_one_pass(data, cuts):
    maps, masks = data
    maps = [m.astype(np.float32) for m in maps]
    one = ikd_metrics.Accumulator(au_pro_limits=[0.3, 1.0], image_auroc=False)
    one.update(maps, masks)
    whole = one.finish()
    bounds = sorted({0, len(maps), *[min(c, len(maps)) for c in cuts]})
    parts = []
    for a, b in zip(bounds, bounds[1:]):
        acc = ikd_metrics.Accumulator(au_pro_limits=[0.3, 1.0], image_auroc=False)
        for i in range(a, b):
            acc.update(maps[i], masks[i])
        parts.append(acc)
    total = parts[0]
    for p in parts[1:]:
        total.merge(p)
    assert total.images == len(maps)
    merged = total.finish()
    close(whole, merged)
    assert merged["images"] == whole["images"] and merged["regions"] == whole["regions"]
