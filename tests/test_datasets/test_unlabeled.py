"""UnlabeledImageDataset (a folder of images, no label), the labelled validation folder,
the custom dataset config, and class-name / template files."""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

import mmseg_reclip  # noqa: F401
from mmseg_reclip.datasets import (LabelledImageFolderDataset, UnlabeledImageDataset,
                                   get_class_names, get_templates)
from mmseg_reclip.datasets.class_names import read_class_file
from mmseg_reclip.datasets.templates import read_template_file
from tests.tool_utils import REPO_ROOT

CUSTOM_BASE = 'configs/_base_/datasets/custom.py'
STAGE1 = 'configs/reclip/reclip_vit-b16_custom.py'


def _img(path, size=(24, 32), value=100):
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(np.full(size + (3, ), value, np.uint8)).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    """Images in nested folders, odd names, mixed-case extensions, plus non-images."""
    root = tmp_path / 'my photos'
    paths = [
        _img(str(root / 'b.jpg')),
        _img(str(root / 'A.PNG')),
        _img(str(root / 'sub dir' / 'фото.jpeg')),
        _img(str(root / 'sub dir' / 'deeper' / 'c.bmp')),
    ]
    _img(str(root / '.hidden.jpg'))  # hidden: skipped
    _img(str(root / '.cache' / 'x.jpg'))  # hidden folder: skipped
    (root / 'notes.txt').write_text('not an image')
    (root / 'labels.npy').write_bytes(b'\x00')
    return str(root), sorted(paths)


def test_lists_every_image_recursively_sorted(folder):
    root, expected = folder
    ds = UnlabeledImageDataset(data_root=root, pipeline=[])
    assert [ds.get_data_info(i)['img_path'] for i in range(len(ds))] == expected
    # no label path anywhere: nothing can open a label file through this dataset
    assert all('seg_map_path' not in ds.get_data_info(i) for i in range(len(ds)))


def test_extensions_are_configurable(folder):
    root, expected = folder
    ds = UnlabeledImageDataset(data_root=root, extensions=('jpg', '.JPEG'), pipeline=[])
    got = [ds.get_data_info(i)['img_path'] for i in range(len(ds))]
    assert got == [p for p in expected if p.lower().endswith(('.jpg', '.jpeg'))]
    assert len(got) == 2


def test_train_pipeline_runs_without_labels(folder):
    root, expected = folder
    cfg = Config.fromfile(CUSTOM_BASE)
    pipeline = cfg.train_pipeline
    pipeline[1]['scale'] = (64, 32)
    pipeline[2]['crop_size'] = (16, 16)
    ds = UnlabeledImageDataset(data_root=root, pipeline=pipeline)
    sample = ds[0]
    assert tuple(sample['inputs'].shape) == (3, 16, 16)
    assert 'gt_sem_seg' not in sample['data_samples']
    assert sample['data_samples'].img_path == expected[0]
    # a pipeline that asks for labels fails instead of reading some
    ds = UnlabeledImageDataset(
        data_root=root, pipeline=[dict(type='LoadImageFromFile'),
                                  dict(type='LoadAnnotations')])
    with pytest.raises(Exception):
        ds[0]


def test_empty_missing_and_labelled_arguments_are_clear_errors(tmp_path, folder):
    empty = tmp_path / 'empty'
    (empty / 'sub').mkdir(parents=True)
    (empty / 'sub' / 'readme.txt').write_text('x')
    with pytest.raises(ValueError, match=r'no image under .*empty'):
        UnlabeledImageDataset(data_root=str(empty), pipeline=[])
    with pytest.raises(FileNotFoundError, match='image folder not found.*nowhere'):
        UnlabeledImageDataset(data_root=str(tmp_path / 'nowhere'), pipeline=[])
    root, _ = folder
    with pytest.raises(ValueError, match='takes no ann_file'):
        UnlabeledImageDataset(data_root=root, ann_file='train.txt', pipeline=[])
    with pytest.raises(ValueError, match='reads no labels'):
        UnlabeledImageDataset(
            data_root=root, data_prefix=dict(img_path='', seg_map_path='x'), pipeline=[])


def _list_in_subprocess(folder, timeout=60):
    """``list_images(folder)`` in a child process (a walk that loops must fail the test,
    not hang it)."""
    code = ('import json, sys; from mmseg_reclip.datasets.unlabeled import list_images; '
            'print(json.dumps(list_images(sys.argv[1])))')
    try:
        proc = subprocess.run([sys.executable, '-c', code, folder],
                              cwd=str(REPO_ROOT),
                              capture_output=True,
                              text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f'listing {folder} did not finish in {timeout} s (symlink loop?)')
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stdout + proc.stderr


def test_symlink_loops_are_listed_once_without_hanging(folder, tmp_path):
    """Two links to the folder itself, a link to its parent, a link to a sibling folder
    and a self-referencing file link: the walk ends, lists every image once, and follows
    the link that leads outside the folder without a loop."""
    root, expected = folder
    os.symlink('.', osp.join(root, 'self1'))
    os.symlink('.', osp.join(root, 'sub dir', 'self2'))
    os.symlink('..', osp.join(root, 'sub dir', 'deeper', 'up'))
    os.symlink(osp.join(root, '..'), osp.join(root, 'to parent'))
    os.symlink('loop.jpg', osp.join(root, 'loop.jpg'))  # a file link to itself
    elsewhere = _img(str(tmp_path / 'elsewhere' / 'e.png'))
    os.symlink(osp.dirname(elsewhere), osp.join(root, 'linked'))
    os.symlink(osp.dirname(elsewhere), osp.join(root, 'sub dir', 'linked again'))
    got, log = _list_in_subprocess(root)
    assert got == sorted(expected + [osp.join(root, 'linked', 'e.png')])
    assert 'loop.jpg' in log  # named as skipped, not listed
    ds = UnlabeledImageDataset(data_root=root, pipeline=[])
    assert [ds.get_data_info(i)['img_path'] for i in range(len(ds))] == got


def test_class_names_set_metainfo(folder, tmp_path):
    root, _ = folder
    names = tmp_path / 'names.txt'
    names.write_text('cat\nperson, people\n', encoding='utf-8')
    ds = UnlabeledImageDataset(data_root=root, class_names=str(names), pipeline=[])
    assert ds.metainfo['classes'] == ('cat', 'person')
    assert len(ds.metainfo['palette']) == 2


def test_custom_config_reads_environment_and_val_is_optional(folder, tmp_path, monkeypatch):
    root, expected = folder
    names = tmp_path / 'names.txt'
    names.write_text('sky\ngrass\n')
    monkeypatch.setenv('DATA_ROOT', root)
    monkeypatch.setenv('CLASS_NAMES', str(names))
    cfg = Config.fromfile(STAGE1)
    assert cfg.val_dataloader is None and cfg.val_cfg is None and cfg.val_evaluator is None
    assert cfg.model.decode_head.class_names == str(names)
    assert cfg.model.decode_head.num_classes is None
    train = cfg.train_dataloader.dataset.dataset
    assert train.type == 'UnlabeledImageDataset' and train.data_root == root
    # with a labelled folder: a val loop with IoUMetric on LabelledImageFolderDataset
    val_img, val_ann = tmp_path / 'val img', tmp_path / 'val ann'
    _img(str(val_img / 'v.jpg'), size=(8, 8))
    val_ann.mkdir()
    label = np.array([[0, 1, 255, 1]] * 8, np.uint8).repeat(2, axis=1)
    Image.fromarray(label).save(str(val_ann / 'v.png'))
    monkeypatch.setenv('VAL_IMG_DIR', str(val_img))
    monkeypatch.setenv('VAL_ANN_DIR', str(val_ann))
    cfg = Config.fromfile(STAGE1)
    assert cfg.val_cfg == dict(type='ValLoop')
    assert cfg.val_evaluator.type == 'IoUMetric'
    from mmseg.registry import DATASETS
    val_cfg = cfg.val_dataloader.dataset
    val = DATASETS.build(val_cfg)
    assert isinstance(val, LabelledImageFolderDataset)
    assert val.metainfo['classes'] == ('sky', 'grass') and len(val) == 1
    sample = val[0]
    np.testing.assert_array_equal(sample['data_samples'].gt_sem_seg.data[0].numpy(), label)


@pytest.mark.parametrize('value', [
    "my 'quoted' \"photos\" of l'été",
    "x'); import os; os.system('touch {marker}') #",
    "x'; import os; os.system('touch {marker}'); y='",
])
def test_environment_values_are_values_not_code(tmp_path, monkeypatch, value):
    """DATA_ROOT / CLASS_NAMES reach the config as values: quotes and apostrophes are
    kept, and nothing in them runs."""
    marker = tmp_path / 'pwned'
    value = value.replace('{marker}', str(marker))
    for var, suffix in (('DATA_ROOT', ''), ('CLASS_NAMES', '.txt'), ('VAL_IMG_DIR', '/i'),
                        ('VAL_ANN_DIR', '/a'), ('VAL_IMG_SUFFIX', '.png')):
        monkeypatch.setenv(var, value + suffix)
    cfg = Config.fromfile(STAGE1)
    assert not marker.exists()
    assert cfg.train_dataloader.dataset.dataset.data_root == value
    assert cfg.test_dataloader.dataset.data_root == value
    assert cfg.model.decode_head.class_names == value + '.txt'
    assert cfg.train_dataloader.dataset.dataset.class_names == value + '.txt'
    assert cfg.val_dataloader.dataset.data_prefix == dict(
        img_path=value + '/i', seg_map_path=value + '/a')
    assert cfg.val_dataloader.dataset.img_suffix == value + '.png'
    assert 'sys' not in cfg and not [k for k in cfg if 'environ' in k]  # not settings
    Config.fromstring(cfg.pretty_text, '.py')  # the dumped config reads back
    assert not marker.exists()


# ------------------------------------------------------------------ class / template files
def test_class_file_format(tmp_path):
    path = tmp_path / 'классы names.txt'
    path.write_text(
        '\ufeff# my classes\n\ncat   # a pet\n  person ,people,  human \n'
        'sky\n\n# end\n',
        encoding='utf-8')
    expected = [['cat'], ['person', 'people', 'human'], ['sky']]
    assert read_class_file(str(path)) == expected
    # the same file works wherever class_names are read (configs, heads, datasets)
    assert get_class_names(str(path)) == expected


@pytest.mark.parametrize('text,match', [
    ('', 'has no entries'),
    ('# only\n\n   # comments\n', 'has no entries'),
    ('cat\ndog\nCat\n', r"'Cat' appears twice \(classes 0 and 2\)"),
    ('person, people\nPeople\n', 'appears twice'),
    ('cat,,dog\n', 'empty name between commas'),
])
def test_bad_class_files_are_clear_errors(tmp_path, text, match):
    path = tmp_path / 'bad.txt'
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as err:
        get_class_names(str(path))
    assert 'bad.txt' in str(err.value)


def test_missing_class_file_and_unknown_key(tmp_path):
    with pytest.raises(FileNotFoundError, match='class-name file not found.*gone.txt'):
        get_class_names(str(tmp_path / 'gone.txt'))
    with pytest.raises(ValueError, match='Unknown class-name key .*class-name file'):
        get_class_names('voc21')
    # a missing file whose name has no .txt: says that no such file exists, and where
    for missing in (str(tmp_path / 'my_classes'), 'my_classes'):
        with pytest.raises(ValueError) as err:
            get_class_names(missing)
        msg = str(err.value)
        assert f'no file {osp.abspath(missing)!r}' in msg and 'voc20' in msg, msg
    assert len(get_class_names('voc20')) == 20  # keys still work


def test_template_file(tmp_path):
    path = tmp_path / 't.txt'
    path.write_text('# prompts\na photo of a {}.\n\nthere is a {} in the scene.\n')
    assert read_template_file(str(path)) == ['a photo of a {}.', 'there is a {} in the scene.']
    assert get_templates(str(path)) == read_template_file(str(path))
    path.write_text('a photo of a {}.\na photo of something.\n')
    with pytest.raises(ValueError, match=r"t.txt.*'a photo of something.' must contain"):
        get_templates(str(path))
    path.write_text('# nothing\n')
    with pytest.raises(ValueError, match='template file .*t.txt.* has no entries'):
        get_templates(str(path))
    # str.format fields other than one `{}` are errors naming the file and its line
    for text, line in (('# mine\na {} photo.\n\na {name} photo of a {}.\n',
                        4), ('a {}} photo.\n', 1), ('a {0} photo.\n', 1), ('a {!r} photo.\n', 1),
                       ('a {:>9} photo.\n', 1), ('a {{}} photo.\n', 1)):
        path.write_text(text)
        with pytest.raises(ValueError, match=rf"t.txt', line {line}: .* exactly one '{{}}'"):
            get_templates(str(path))
    path.write_text('a {{literal}} {} photo.\n')  # braces doubled: literal braces
    assert get_templates(str(path)) == ['a {{literal}} {} photo.']
    assert get_templates(['a {} photo.'])[0].format('cat') == 'a cat photo.'
    for bad in ('a {}} photo.', 'a {x} {} photo.'):
        with pytest.raises(ValueError, match='exactly one'):
            get_templates([bad])
    assert len(get_templates('reclip85')) == 85


def test_one_class_gets_the_implicit_background(tmp_path):
    """A one-class list predicts that class against an implicit 'background' class
    (index 1, after it), wherever class names are read."""
    from mmseg_reclip.datasets.class_names import IMPLICIT_BACKGROUND
    assert IMPLICIT_BACKGROUND == ['background']
    assert get_class_names(['person']) == [['person'], ['background']]
    assert get_class_names([['person', 'people']]) == [['person', 'people'], ['background']]
    path = tmp_path / 'one.txt'
    path.write_text('# just one\nperson, people\n')
    assert get_class_names(str(path)) == [['person', 'people'], ['background']]
    assert read_class_file(str(path)) == [['person', 'people']]  # the file as written
    assert get_class_names(['person', 'sky']) == [['person'], ['sky']]  # two: as given
    for names in (['Background'], [['thing', 'background']]):
        with pytest.raises(ValueError, match='at least two classes'):
            get_class_names(names)
    # a dataset of a one-line class file names both classes
    root = tmp_path / 'imgs'
    _img(str(root / 'a.jpg'))
    ds = UnlabeledImageDataset(data_root=str(root), class_names=str(path), pipeline=[])
    assert ds.metainfo['classes'] == ('person', 'background')


def test_head_takes_num_classes_from_a_class_file(tmp_path):
    from mmseg.registry import MODELS

    from tests.clip_utils import TINY, save_random_clip
    clip = save_random_clip(str(tmp_path / 'tiny.pt'))
    names = tmp_path / 'names.txt'
    names.write_text('cat\nperson, people\nsky\n')
    head = MODELS.build(
        dict(
            type='MaskCLIPHead',
            class_names=str(names),
            num_classes=None,
            in_channels=64,
            templates='single',
            query_cache_dir=None,
            text_encoder=dict(type='OpenCLIPTextEncoder', model_name=TINY, pretrained=clip)))
    assert head.num_classes == 3
    assert head.class_names == [['cat'], ['person', 'people'], ['sky']]
    assert head.name_to_class.tolist() == [0, 1, 1, 2]
