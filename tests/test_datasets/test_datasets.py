"""Tests of templates, class names, datasets, COCO-27 conversion and the
dataset base configs."""
import copy
import importlib.util
import os
import os.path as osp
import re

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS

import mmseg_reclip  # noqa: F401  (mmcv.ops shim + registrations)
from mmseg_reclip.datasets import (CLASS_NAMES, COCOSTUFF27_CLASSES, COCOSTUFF27_SEG_MAP_SUFFIX,
                                   COCOSTUFF_FINE_TO_COARSE27, IMAGENET_TEMPLATES, SCENE_TEMPLATES,
                                   TEMPLATE_SETS, COCOStuff27Dataset, PascalVOC20Dataset,
                                   convert_labels, get_class_names, get_templates)
from tests.data_utils import (make_ade_layout, make_cityscapes_layout, make_coco_stuff_layout,
                              make_context_layout, make_voc_layout, read_label)
from tests.tool_utils import REPO_ROOT, run_tool

CFG_DIR = REPO_ROOT / 'configs' / '_base_' / 'datasets'
BASE_CFGS = {
    'voc20': dict(n=20, crop=(336, 336), short=336),
    'context59': dict(n=59, crop=(480, 480), short=448),
    'ade20k': dict(n=150, crop=(512, 512), short=512),
    'cityscapes': dict(n=19, crop=(512, 512), short=448),
    'cocostuff27': dict(n=27, crop=(512, 512), short=512),
}
CONVERTER = 'tools/dataset_converters/coco_stuff27.py'
# 0-based COCO-Stuff ids that COCO-Stuff-164k does not use.
UNUSED_IDS = {11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90}


@pytest.fixture(autouse=True, scope='module')
def _mmseg_scope():
    init_default_scope('mmseg')


def _load_cfg(name):
    return Config.fromfile(str(CFG_DIR / f'{name}.py'))


def _norm(name):
    return re.sub(r'[\s_\-]', '', name.lower())


def _with_root(dataset_cfg, root, pipeline=None):
    cfg = copy.deepcopy(dataset_cfg)
    cfg['data_root'] = root
    if pipeline is not None:
        cfg['pipeline'] = pipeline
    return cfg


# --------------------------------------------------------------- templates
def test_templates_reclip85():
    t = get_templates('reclip85')
    assert len(t) == 85 and len(set(t)) == 85
    assert all(s.count('{}') == 1 for s in t)
    assert t[:80] == IMAGENET_TEMPLATES and t[80:] == SCENE_TEMPLATES
    assert t[0] == 'a bad photo of a {}.'
    assert 'this is one {} in the scene.' in t
    assert len(get_templates('imagenet80')) == 80
    assert get_templates('scene5') == SCENE_TEMPLATES
    assert get_templates('single') == ['a photo of a {}.']
    assert set(TEMPLATE_SETS) == {'reclip85', 'imagenet80', 'scene5', 'single'}
    # returned lists are copies
    get_templates('single').append('x {}')
    assert TEMPLATE_SETS['single'] == ['a photo of a {}.']


def test_templates_match_openai_list():
    zsm = pytest.importorskip('open_clip.zero_shot_metadata')
    ref = [f('{}') for f in zsm.OPENAI_IMAGENET_TEMPLATES]
    assert IMAGENET_TEMPLATES == ref


def test_get_templates_errors():
    assert get_templates(['a {}.', 'the {}!']) == ['a {}.', 'the {}!']
    with pytest.raises(ValueError, match='reclip85'):
        get_templates('nope')
    with pytest.raises(ValueError):
        get_templates(['no placeholder'])
    with pytest.raises(ValueError):
        get_templates(['{} and {}'])
    with pytest.raises(ValueError):
        get_templates([])


# ------------------------------------------------------------- class names
def test_class_name_counts_match_mmseg():
    from mmseg.datasets import ADE20KDataset, CityscapesDataset, PascalContextDataset59
    expected = {
        'voc20': PascalVOC20Dataset,
        'context59': PascalContextDataset59,
        'ade150': ADE20KDataset,
        'cityscapes19': CityscapesDataset,
        'cocostuff27': COCOStuff27Dataset
    }
    counts = {'voc20': 20, 'context59': 59, 'ade150': 150, 'cityscapes19': 19, 'cocostuff27': 27}
    assert set(CLASS_NAMES) == set(expected)
    for key, cls in expected.items():
        names = get_class_names(key)
        ref = cls.METAINFO['classes']
        assert len(names) == counts[key] == len(ref), key
        firsts = [n[0] for n in names]
        assert len(set(firsts)) == len(firsts), key
        # first (readable) name equals the dataset's own name, up to
        # case / spaces / separators (VOC's 'aeroplane' is 'airplane' in docs/method.md §9)
        alias = {'airplane': 'aeroplane'} if key == 'voc20' else {}
        for ours, theirs in zip(firsts, ref):
            assert _norm(alias.get(ours, ours)) == _norm(theirs), (key, ours, theirs)


def test_class_names_paper_lists():
    voc = [n[0] for n in get_class_names('voc20')]
    assert voc[0] == 'airplane' and voc[10] == 'dining table'
    assert voc[-1] == 'tv monitor' and voc[14] == 'person'
    coco = [n[0] for n in get_class_names('cocostuff27')]
    assert coco == list(COCOSTUFF27_CLASSES)
    assert coco[9] == 'person' and coco[23] == 'sky' and coco[-1] == 'water'


def test_get_class_names_normalises():
    assert get_class_names(['cat', ['dog', 'puppy'], ' cow ']) == [['cat'], ['dog', 'puppy'],
                                                                   ['cow']]
    assert get_class_names(('a', 'b')) == [['a'], ['b']]
    out = get_class_names('voc20')
    out[0].append('x')  # copies: the registry is untouched
    assert get_class_names('voc20')[0] == ['airplane']
    with pytest.raises(ValueError, match='voc20'):
        get_class_names('voc21')
    for bad in ([], [''], ['cat', []], ['cat', ['dog', '  ']]):
        with pytest.raises(ValueError):
            get_class_names(bad)
    with pytest.raises(TypeError):
        get_class_names(['cat', 3])


# ------------------------------------------------------- COCO-Stuff-27 map
def test_coco27_mapping_table():
    from mmseg.datasets import COCOStuffDataset
    assert set(COCOSTUFF_FINE_TO_COARSE27) == set(range(182)) - UNUSED_IDS
    assert len(COCOSTUFF_FINE_TO_COARSE27) == 171
    assert set(COCOSTUFF_FINE_TO_COARSE27.values()) == set(range(27))
    for fine, coarse in COCOSTUFF_FINE_TO_COARSE27.items():
        # things (COCO ids 1..91) -> 0..11, stuff (92..182) -> 12..26
        assert (coarse < 12) == (fine < 91), fine
    # names: the 171 used ids in order are mmseg's COCOStuffDataset classes
    fine_names = dict(zip(sorted(COCOSTUFF_FINE_TO_COARSE27), COCOStuffDataset.METAINFO['classes']))
    coarse_of = {
        n: COCOSTUFF27_CLASSES[COCOSTUFF_FINE_TO_COARSE27[i]]
        for i, n in fine_names.items()
    }
    known = {
        'person': 'person',
        'bicycle': 'vehicle',
        'boat': 'vehicle',
        'traffic light': 'outdoor',
        'bench': 'outdoor',
        'giraffe': 'animal',
        'tie': 'accessory',
        'kite': 'sports',
        'bowl': 'kitchen',
        'cake': 'food things',
        'toilet': 'furniture things',
        'tv': 'electronic',
        'refrigerator': 'appliance',
        'toothbrush': 'indoor',
        'banner': 'textile',
        'bridge': 'building',
        'clouds': 'sky',
        'sky-other': 'sky',
        'fog': 'water',
        'sea': 'water',
        'road': 'ground',
        'snow': 'ground',
        'tree': 'plant',
        'moss': 'plant',
        'rock': 'solid',
        'wood': 'solid',
        'fence': 'structural',
        'cabinet': 'furniture stuff',
        'table': 'furniture stuff',
        'carpet': 'floor',
        'paper': 'raw material',
        'salad': 'food stuff',
        'tent': 'building'
    }
    for fine, coarse in known.items():
        assert coarse_of[fine] == coarse, fine
    for fine, coarse in coarse_of.items():
        prefix = fine.split('-')[0]
        if prefix in ('wall', 'floor', 'ceiling', 'window') and '-' in fine:
            assert coarse == prefix, fine


def test_convert_labels():
    # person, sky-other, clouds, unlabeled / street sign (unused), hair brush
    # (unused), wood, out of range / bicycle, banner, wall-brick, wine glass
    fine = np.array([[0, 156, 105, 255], [11, 90, 181, 200], [1, 91, 170, 45]], dtype=np.uint8)
    out = convert_labels(fine)
    expected = np.array([[9, 23, 23, 255], [255, 255, 24, 255], [11, 17, 18, 5]], dtype=np.uint8)
    assert out.dtype == np.uint8 and out.shape == fine.shape
    np.testing.assert_array_equal(out, expected)
    # every value against the table; int inputs and out-of-range values
    allv = np.arange(-3, 300).reshape(3, -1)
    out = convert_labels(allv)
    ref = [COCOSTUFF_FINE_TO_COARSE27.get(int(v), 255) for v in allv.flat]
    np.testing.assert_array_equal(out.ravel(), ref)
    with pytest.raises(TypeError):
        convert_labels(np.zeros((2, 2), dtype=np.float32))


def _load_converter():
    spec = importlib.util.spec_from_file_location('coco_stuff27_converter',
                                                  str(REPO_ROOT / CONVERTER))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_coco27_converter_cli(tmp_path):
    root = str(tmp_path / 'coco_stuff164k')
    raw = make_coco_stuff_layout(root, n_per_split=2)
    proc = run_tool([CONVERTER, root, '--nproc', '2'], timeout=180)
    assert 'converted 4 label maps' in proc.stdout
    for path, label in raw.items():
        out_path = path[:-4] + COCOSTUFF27_SEG_MAP_SUFFIX
        out = read_label(out_path)
        np.testing.assert_array_equal(out, convert_labels(label))
        assert out[0, 0] == 9 and out[-1, -1] == 255
        assert out.max() == 255 and (out[out != 255] < 27).all()
        np.testing.assert_array_equal(read_label(path), label)  # untouched
    for split in ('train2017', 'val2017'):
        files = os.listdir(osp.join(root, 'annotations', split))
        assert len(files) == 4, files  # 2 raw + 2 converted, no temp files
    # converted maps are never taken as inputs on a rerun
    conv = _load_converter()
    assert sorted(conv.find_raw_label_maps(root, ['train2017', 'val2017'])) == sorted(raw)
    # an empty root is an error (in-process: one subprocess is enough)
    assert conv.main([str(tmp_path / 'empty')]) == 1


def test_coco27_converter_single_process(tmp_path):
    conv = _load_converter()
    root = str(tmp_path / 'c')
    raw = make_coco_stuff_layout(root, n_per_split=1, splits=('val2017', ))
    assert conv.main([root, '--splits', 'val2017']) == 0
    (path, label), = raw.items()
    np.testing.assert_array_equal(read_label(conv.output_path(path)), convert_labels(label))


# ------------------------------------------------------------ base configs
@pytest.mark.parametrize('name', sorted(BASE_CFGS))
def test_base_config_is_unsupervised(name):
    cfg = _load_cfg(name)
    spec = BASE_CFGS[name]
    assert cfg.num_classes == spec['n']
    assert len(get_class_names(cfg.class_names)) == spec['n']
    assert len(DATASETS.get(cfg.dataset_type).METAINFO['classes']) == spec['n']
    assert tuple(cfg.crop_size) == spec['crop']

    for pipeline in (cfg.train_pipeline, cfg.train_dataloader.dataset.dataset.pipeline):
        types = [t['type'] for t in pipeline]
        assert types == [
            'LoadImageFromFile', 'RandomResize', 'RandomCrop', 'RandomFlip',
            'PhotoMetricDistortion', 'PackSegInputs'
        ]
        assert not any('Annotation' in t for t in types)
        crop = pipeline[2]
        assert tuple(crop['crop_size']) == spec['crop']
        assert crop.get('cat_max_ratio', 1.0) >= 1.0
        assert tuple(pipeline[1]['ratio_range']) == (0.5, 2.0)
        assert pipeline[1]['keep_ratio'] is True

    test_types = [t['type'] for t in cfg.test_pipeline]
    assert test_types == ['LoadImageFromFile', 'Resize', 'LoadAnnotations', 'PackSegInputs']
    assert tuple(cfg.test_pipeline[1]['scale']) == (2048, spec['short'])
    assert cfg.test_dataloader.dataset.pipeline == cfg.test_pipeline
    # per-sample augmentation seeds, in the config (mmseg's own train.py gets them too)
    assert cfg.train_dataloader.sampler.type == 'StepSeededSampler'
    assert cfg.train_dataloader.sampler.sampler.type == 'InfiniteSampler'
    assert cfg.train_dataloader.dataset.type == 'StepSeededDataset'
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.train_dataloader.num_workers == 4
    assert cfg.train_dataloader.persistent_workers is True
    for ev in (cfg.val_evaluator, cfg.test_evaluator):
        assert ev.type == 'IoUMetric' and list(ev.iou_metrics) == ['mIoU']


# ------------------------------------------------------------------- VOC20
@pytest.fixture(scope='module')
def voc_root(tmp_path_factory):
    return make_voc_layout(str(tmp_path_factory.mktemp('voc')), n_generated=3)


def test_voc20_dataset_gt(voc_root):
    cfg = _load_cfg('voc20')
    ds = DATASETS.build(_with_root(cfg.test_dataloader.dataset, voc_root))
    assert isinstance(ds, PascalVOC20Dataset)
    assert len(ds) == 4
    assert ds.metainfo['classes'][0] == 'aeroplane'
    assert len(ds.metainfo['classes']) == len(ds.metainfo['palette']) == 20
    assert ds.reduce_zero_label is True
    seen = set()
    for i in range(len(ds)):
        out = ds[i]
        sample = out['data_samples']
        name = osp.splitext(osp.basename(sample.img_path))[0]
        raw = read_label(osp.join(voc_root, 'SegmentationClass', name + '.png'))
        expected = np.where(raw == 0, 255, np.where(raw == 255, 255, raw.astype(int) - 1))
        gt = sample.gt_sem_seg.data.numpy()[0]
        np.testing.assert_array_equal(gt, expected)
        seen.update(np.unique(gt).tolist())
        # image resized to short side 336, gt kept at original size
        h, w = out['inputs'].shape[1:]
        assert min(h, w) == 336
        assert sample.ori_shape == raw.shape
    assert 255 in seen and 14 in seen  # real image: person (15) -> 14


def test_voc20_train_pipeline_reads_no_labels(voc_root, tmp_path):
    import shutil
    cfg = _load_cfg('voc20')
    # without any label file the unsupervised train pipeline must still work
    root = str(tmp_path / 'voc_nolabels')
    shutil.copytree(voc_root, root)
    shutil.rmtree(osp.join(root, 'SegmentationClass'))
    ds = DATASETS.build(_with_root(cfg.train_dataloader.dataset.dataset, root))
    assert len(ds) == 4
    for i in range(len(ds)):
        out = ds[i]
        sample = out['data_samples']
        assert 'gt_sem_seg' not in sample
        assert not hasattr(sample, 'gt_sem_seg')
        c, h, w = out['inputs'].shape
        assert c == 3 and h <= 336 and w <= 336


# ---------------------------------------------------------- COCO-Stuff-27
def test_cocostuff27_test_dataset(tmp_path):
    root = str(tmp_path / 'coco_stuff164k')
    raw = make_coco_stuff_layout(root, n_per_split=2)
    conv = _load_converter()
    for path in raw:
        conv.convert_file(path)
    cfg = _load_cfg('cocostuff27')
    ds = DATASETS.build(_with_root(cfg.test_dataloader.dataset, root))
    assert isinstance(ds, COCOStuff27Dataset)
    assert len(ds) == 2
    for i in range(len(ds)):
        sample = ds[i]['data_samples']
        assert sample.seg_map_path.endswith(COCOSTUFF27_SEG_MAP_SUFFIX)
        raw_path = sample.seg_map_path[:-len(COCOSTUFF27_SEG_MAP_SUFFIX)]
        expected = convert_labels(raw[raw_path + '.png'])
        np.testing.assert_array_equal(sample.gt_sem_seg.data.numpy()[0], expected)
    train = DATASETS.build(_with_root(cfg.train_dataloader.dataset.dataset, root))
    assert len(train) == 2
    assert 'gt_sem_seg' not in train[0]['data_samples']


# ---------------------------------------- Context / ADE20K / Cityscapes
@pytest.mark.parametrize('name,maker,reduce_zero', [
    ('context59', make_context_layout, True),
    ('ade20k', make_ade_layout, True),
    ('cityscapes', make_cityscapes_layout, False),
])
def test_mmseg_base_config_test_dataset(tmp_path, name, maker, reduce_zero):
    root = str(tmp_path / name)
    (_, label), = maker(root).items()
    cfg = _load_cfg(name)
    ds = DATASETS.build(_with_root(cfg.test_dataloader.dataset, root))
    assert len(ds) == 1
    out = ds[0]
    gt = out['data_samples'].gt_sem_seg.data.numpy()[0]
    if reduce_zero:
        expected = np.where(label == 0, 255, label.astype(int) - 1)
        expected[label == 255] = 255
    else:
        expected = label
    np.testing.assert_array_equal(gt, expected)
    assert min(out['inputs'].shape[1:]) == BASE_CFGS[name]['short']
    train = DATASETS.build(_with_root(cfg.train_dataloader.dataset.dataset, root))
    assert 'gt_sem_seg' not in train[0]['data_samples']
