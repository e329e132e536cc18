"""What each shipped config builds (issue 17 item 5): the dataset bases hold the released
per-dataset values, and every trained config builds a crop-vote hook with its dataset's
window and a model with its dataset's prompt-denoising threshold and classes (the
distiller: CLIP's input normalisation kept, no test-time denoising, the teacher's classes
= the student's). Models are built with the tiny random-weight CLIP in place of the real
one (``model.clip``), with nothing else changed."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS, HOOKS, MODELS

import mmseg_reclip  # noqa: F401  (registrations)
from mmseg_reclip.crop_vote.hook import CropVoteHypothesisHook
from mmseg_reclip.models.decode_heads.maskclip_head import normalize_class_names
from mmseg_reclip.models.segmentors.distiller import ReCLIPDistiller
from tests.clip_utils import TINY

ROOT = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')
ALL = sorted(glob.glob(osp.join(ROOT, '**', '*.py'), recursive=True))
TRAINED = [
    p for p in ALL
    if osp.sep + 'reclip' + osp.sep in p or osp.sep + 'reclip_conference' + osp.sep in p
]
# released crop_size / 6 and the released prompt-denoising thresholds (docs/method.md §5, §8)
EXPECTED = {
    'voc20': (56, 1.0),
    'context59': (80, 0.85),
    'ade20k': (85, 0.5),
    'cityscapes': (85, 0.5),
    'cocostuff27': (85, 0.95),
    'custom': (56, None)
}  # your own images: 336 crop / 6, no released PD
# a config's file name ends with its dataset (``_voc.py``, ``_voc_offline.py``; an
# experiment row may add what it evaluates: ``_voc_bias-metrics.py``)
SUFFIX = {
    'voc': 'voc20',
    'context': 'context59',
    'ade': 'ade20k',
    'cityscapes': 'cityscapes',
    'cocostuff27': 'cocostuff27',
    'custom': 'custom'
}
CLIP_MEAN = [122.771, 116.746, 104.094]
CUSTOM_CLASSES = ['cat', 'dog', 'grass']


def dataset_of(path: str) -> str:
    parts = osp.basename(path)[:-3].split('_')
    return next(SUFFIX[p] for p in reversed(parts) if p in SUFFIX)


def test_every_dataset_base_sets_its_window_and_threshold():
    bases = {osp.basename(p)[:-3]: p for p in ALL if '/_base_/datasets/' in p}
    assert set(EXPECTED) <= set(bases)
    for name, path in bases.items():
        cfg = Config.fromfile(path)
        key = name.replace('_distill', '')
        assert (cfg.crop_vote_window, cfg.pd_threshold) == EXPECTED[key], name


@pytest.fixture
def custom_classes(tmp_path, monkeypatch):
    """The custom configs read their class file from ``CLASS_NAMES`` at parse time."""
    path = tmp_path / 'classes.txt'
    path.write_text('\n'.join(CUSTOM_CLASSES) + '\n')
    monkeypatch.setenv('CLASS_NAMES', str(path))
    return CUSTOM_CLASSES


@pytest.mark.parametrize('path', TRAINED, ids=lambda p: osp.basename(p))
def test_trained_config_builds_its_dataset_values(path, clip_file, custom_classes):
    dataset = dataset_of(path)
    window, pd_threshold = EXPECTED[dataset]
    cfg = Config.fromfile(path)
    init_default_scope('mmseg')

    hooks = [HOOKS.build(h) for h in cfg.get('custom_hooks', [])]
    votes = [h for h in hooks if isinstance(h, CropVoteHypothesisHook)]
    if cfg.model.type == 'MaskCLIP':  # a training-free row of an experiment table
        assert not votes
    elif votes[0].mode == 'global':  # conference ReCLIP (docs/method.md §11.3)
        values = cfg.conference_hypothesis[dataset]
        assert len(votes) == 1
        assert (votes[0].score_threshold, votes[0].top_k) == (values.score_threshold, values.top_k)
    else:
        assert len(votes) == 1 and votes[0].mode == 'crop_vote' and votes[0].window == window

    options = {'model.clip.model_name': TINY, 'model.clip.pretrained': clip_file}
    if cfg.model.type != 'ReCLIPDistiller':  # (the student head encodes no text)
        options.update({
            'model.decode_head.templates': 'single',
            'model.decode_head.query_cache_dir': None
        })
    cfg.merge_from_dict(options)
    model = MODELS.build(cfg.model)
    classes = model.decode_head.class_names
    if dataset == 'custom':
        assert classes == normalize_class_names(custom_classes)
    else:  # the model predicts the classes the dataset evaluates, in its order
        ds_classes = DATASETS.get(cfg.test_dataloader.dataset.type).METAINFO['classes']
        assert len(classes) == len(ds_classes) == model.decode_head.num_classes
    if isinstance(model, ReCLIPDistiller):
        # distillation evaluates without prompt denoising (docs/method.md §8); the teacher
        # and crop voting read CLIP inputs, so the inherited CLIP normalisation stays
        assert model.pd_threshold is None
        assert model.data_preprocessor.mean.flatten().tolist() == pytest.approx(CLIP_MEAN)
        teacher_classes = normalize_class_names(
            model.distill_teacher.cfg['decode_head']['class_names'])
        assert teacher_classes == classes
    elif cfg.model.type == 'MaskCLIP':  # the baseline as published: no prompt denoising
        assert model.pd_threshold is None
    else:
        assert model.pd_threshold == pd_threshold
