"""The bias metrics (class preference, space preference) against hand-computed values
on synthetic predictions."""
import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.registry import METRICS
from mmseg.structures import SegDataSample

from mmseg_reclip.evaluation.metrics.space_preference_metric import centre_distance, object_areas

CLASSES = ('a', 'b', 'c')


def sample(pred, label):
    s = SegDataSample()
    s.pred_sem_seg = PixelData(data=torch.as_tensor(np.asarray(pred))[None])
    s.gt_sem_seg = PixelData(data=torch.as_tensor(np.asarray(label))[None])
    return s.to_dict()


def run(metric_cfg, pairs, split=None):
    """Evaluate like mmengine: process per batch, then compute_metrics on the results;
    with ``split``, two metric instances (two "ranks") whose results are concatenated,
    which is what mmengine's ``collect_results`` hands to rank 0."""
    metric = METRICS.build(metric_cfg)
    metric.dataset_meta = dict(classes=CLASSES)
    if split is None:
        for p, l in pairs:
            metric.process({}, [sample(p, l)])
        return metric, metric.compute_metrics(metric.results)
    other = METRICS.build(metric_cfg)
    other.dataset_meta = dict(classes=CLASSES)
    for i, (p, l) in enumerate(pairs):
        (metric if i < split else other).process({}, [sample(p, l)])
    return metric, metric.compute_metrics(metric.results + other.results)


# -- class preference -----------------------------------------------------------------


def test_class_score_of_swapping_two_classes():
    # GT: a on the left half, b on the right half, c in the bottom row.
    label = np.zeros((4, 4), np.int64)
    label[:, 2:] = 1
    label[3] = 2
    # Prediction swaps a and b everywhere; c is right.
    pred = np.where(label == 0, 1, np.where(label == 1, 0, label))
    _, res = run(dict(type='ClassPreferenceMetric'), [(pred, label)])
    # a: row (0, 1, 0) -> 0 - 1 = -1; b: (1, 0, 0) -> -1; c: (0, 0, 1) -> 1 - 0 = 1.
    assert res['class_pref_per_class'] == {'a': -1.0, 'b': -1.0, 'c': 1.0}
    assert res['class_pref'] == pytest.approx(-1 / 3)
    assert res['class_pref_confused']['a'] == 'b'
    assert res['class_pref_confused']['b'] == 'a'


def test_class_score_partial_confusion_and_ignore():
    label = np.array([[0, 0, 0, 0], [1, 1, 1, 1], [255, 255, 255, 255]])
    pred = np.array([[0, 0, 0, 2], [1, 0, 2, 2], [1, 1, 1, 1]])  # ignored row is wrong
    metric, res = run(dict(type='ClassPreferenceMetric'), [(pred, label)])
    # a: (3/4, 0, 1/4) -> 0.5; b: (1/4, 1/4, 2/4) -> 1/4 - 1/2 = -0.25; c absent.
    assert res['class_pref_per_class'] == pytest.approx({'a': 0.5, 'b': -0.25})
    assert res['class_pref'] == pytest.approx(0.125)
    assert res['class_pref_confused'] == {'a': 'c', 'b': 'c'}
    assert metric.confusion.tolist() == [[3, 0, 1], [1, 1, 2], [0, 0, 0]]


def test_class_score_perfect_is_one():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, (8, 8))
    _, res = run(dict(type='ClassPreferenceMetric'), [(label, label)])
    assert res['class_pref'] == pytest.approx(1.0)


def test_class_score_gathered_equals_single():
    rng = np.random.default_rng(1)
    pairs = [(rng.integers(0, 3, (6, 7)), rng.integers(0, 3, (6, 7))) for _ in range(5)]
    _, one = run(dict(type='ClassPreferenceMetric'), pairs)
    _, two = run(dict(type='ClassPreferenceMetric'), pairs, split=2)
    assert one == two


# -- space preference -----------------------------------------------------------------


def test_centre_distance_normalisation():
    # 10 x 20 image: centre pixel block -> 0; top-left pixel -> near 1.
    assert centre_distance(np.array([4, 5]), np.array([9, 10]), 10, 20) == pytest.approx(0)
    d = centre_distance(np.array([0]), np.array([0]), 10, 20)
    assert d == pytest.approx(np.hypot(0.95, 0.9) / np.sqrt(2))


def centre_and_border_scene(size=40):
    """One square object of class a in the centre, four of class b at the corners."""
    label = np.full((size, size), 255, np.int64)
    c = size // 2
    label[c - 4:c + 4, c - 4:c + 4] = 0
    for y, x in ((0, 0), (0, size - 6), (size - 6, 0), (size - 6, size - 6)):
        label[y:y + 6, x:x + 6] = 1
    return label


def test_space_slope_negative_when_border_is_wrong():
    label = centre_and_border_scene()
    pred = label.copy()
    pred[label == 1] = 2  # perfect in the centre, wrong at the border
    pred[label == 255] = 0
    metric, res = run(dict(type='SpacePreferenceMetric', bins=(0, 0.5, 1.0)), [(pred, label)])
    curve = res['space_pref_curve']
    assert curve['objects'] == [1, 4]
    # centre bin: a, intersection 64, union 64 + every false positive of a (ignored
    # pixels are not counted) = 64 -> IoU 1. Border bin: b, IoU 0.
    assert curve['miou'] == [100.0, 0.0]
    # slope = (0 - 1) / (0.75 - 0.25) = -2
    assert res['space_pref'] == pytest.approx(-2.0)


def test_space_slope_zero_when_uniform_and_false_positives_charged():
    label = centre_and_border_scene()
    label[label == 255] = 2  # a background class everywhere else
    pred = label.copy()
    # One false-positive pixel of b next to the top-left corner object.
    pred[6, 6] = 1
    _, res = run(dict(type='SpacePreferenceMetric', bins=(0, 0.5, 1.0)), [(pred, label)])
    miou = res['space_pref_curve']['miou']
    # Centre bin: class a IoU 1 and the background object (class c, centroid at the
    # centre, missing one pixel): 1 - 1/(40*40-64-144) ... ; border bin: b: 144/145.
    bg = 40 * 40 - 64 - 144
    assert miou[0] == pytest.approx(round((1 + (bg - 1) / bg) / 2 * 100, 2))
    assert miou[1] == pytest.approx(round(144 / 145 * 100, 2))
    areas = object_areas(pred, label, 3, (0, 0.5, 1.0))
    # Summed over objects of a class, intersection/union equal the image's.
    for c in range(3):
        inter = np.sum((pred == c) & (label == c))
        union = np.sum((pred == c) | (label == c))
        assert areas[0, :, c].sum() == inter and areas[1, :, c].sum() == union


def test_space_bins_setting_and_validation():
    label = centre_and_border_scene()
    _, res = run(dict(type='SpacePreferenceMetric', bins=(0, 0.25, 0.5, 0.75, 1)), [(label, label)])
    assert len(res['space_pref_curve']['miou']) == 4
    assert res['space_pref'] == pytest.approx(0.0)
    with pytest.raises(ValueError, match='increasing'):
        METRICS.build(dict(type='SpacePreferenceMetric', bins=(0, 0.5, 0.5)))


def test_space_gathered_equals_single():
    rng = np.random.default_rng(2)
    pairs = []
    for _ in range(5):
        label = rng.integers(0, 3, (12, 16))
        label[rng.random((12, 16)) < 0.1] = 255
        pairs.append((rng.integers(0, 3, (12, 16)), label))
    _, one = run(dict(type='SpacePreferenceMetric'), pairs)
    _, two = run(dict(type='SpacePreferenceMetric'), pairs, split=3)
    assert one == two


def test_false_positives_go_to_the_nearest_object_of_their_class():
    # Class b: one object in the centre, one in the top-left corner. Class a fills the
    # rest. Prediction: 5 pixels of a next to the corner object are predicted b, and 3
    # pixels of a next to the centre object are predicted b.
    label = np.zeros((40, 40), np.int64)
    label[18:22, 18:22] = 1
    label[0:4, 0:4] = 1
    pred = label.copy()
    pred[4, 0:5] = 1  # below the corner object
    pred[22, 19:22] = 1  # below the centre object
    areas = object_areas(pred, label, 2, (0, 0.5, 1.0))
    inter, union, count = areas
    assert count.tolist() == [[1, 1], [0, 1]]  # bin 0: a (whole frame) and b; bin 1: b
    assert inter[:, 1].tolist() == [16, 16]
    assert union[:, 1].tolist() == [16 + 3, 16 + 5]
    # Class a is one object centred in the frame: it lost 8 pixels, nothing extra.
    assert inter[0, 0] == 1600 - 32 - 8 and union[0, 0] == 1600 - 32


def asymmetric_scene():
    """A 24 x 60 image (not square, no symmetry about the centre): class 0 is a 4 x 6
    object at the left edge, upper half (rows 2-5, columns 0-5); class 1 a 6 x 10 object
    right of and below the centre (rows 14-19, columns 36-45); the rest is ignored."""
    label = np.full((24, 60), 255, np.int64)
    label[2:6, 0:6] = 0
    label[14:20, 36:46] = 1
    return label


def test_centre_distance_of_an_asymmetric_scene():
    """Hand-computed centroids (pixel centres at +0.5): the left object at x = 3, y = 4,
    the right one at x = 41, y = 17, in a 60-wide, 24-high image (centre 30, 12)."""
    label = asymmetric_scene()
    ys, xs = np.nonzero(label == 0)
    assert centre_distance(ys, xs, 24, 60) == pytest.approx(
        np.hypot(27 / 30, 8 / 12) / np.sqrt(2), rel=1e-12)
    ys, xs = np.nonzero(label == 1)
    assert centre_distance(ys, xs, 24, 60) == pytest.approx(
        np.hypot(11 / 30, 5 / 12) / np.sqrt(2), rel=1e-12)


@pytest.mark.parametrize(
    'transform', [np.fliplr, np.flipud, np.transpose, lambda a: np.rot90(a, 2)],
    ids=['mirror', 'flip', 'transpose', 'rot180'])
def test_distances_do_not_change_under_mirroring_or_transposing(transform):
    """Mirroring, flipping or transposing a non-square scene keeps every object's
    normalised distance (a swapped width/height or a half-pixel error would not)."""
    label = asymmetric_scene()
    moved = transform(label)
    h, w = moved.shape
    for c in (0, 1):
        ys, xs = np.nonzero(label == c)
        ys2, xs2 = np.nonzero(moved == c)
        assert centre_distance(ys2, xs2, h, w) == pytest.approx(
            centre_distance(ys, xs, 24, 60), rel=1e-12), c


def test_space_slope_of_an_asymmetric_scene():
    """The far object (left edge, distance 0.79) predicted as an absent class, the near
    one (0.39) right: curve [100, 0] and slope -2, however the scene is turned."""
    label = asymmetric_scene()
    pred = label.copy()
    pred[label == 0] = 2  # a class absent from the image: no false positive charged
    for t in (lambda a: a, np.fliplr, np.transpose):
        _, res = run(
            dict(type='SpacePreferenceMetric', bins=(0, 0.5, 1.0)),
            [(t(pred).copy(), t(label).copy())])
        curve = res['space_pref_curve']
        assert curve['objects'] == [1, 1] and curve['miou'] == [100.0, 0.0]
        assert res['space_pref'] == pytest.approx(-2.0)
