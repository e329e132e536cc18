#!/usr/bin/env python
"""Segment any images with any config: your images, your classes.

    python tools/infer.py IMAGES CONFIG [CHECKPOINT|none] --out DIR
        [--classes "cat,grass,sky" | --classes-file names.txt] [--templates-file t.txt]
        [--device cpu|cuda] [--batch-size N] [--opacity 0.5] [--save-logits] [--show]
        [--cfg-options KEY=VALUE ...]

IMAGES is an image file, a folder (searched recursively), a glob (``'photos/*.jpg'``,
``**`` allowed) or a ``.txt``/``.lst`` file listing image paths (one a line, relative to
the list; ``#`` comments).

Writes, for each image ``NAME`` (its path relative to the folder, without extension;
with it where two images would share a name):

- ``DIR/overlay/NAME.png``: the prediction over the photo, with a legend of the classes
  present;
- ``DIR/label/NAME.png``: the label map (pixel = class index; 16-bit PNG above 255
  classes);
- ``DIR/logits/NAME.npy`` with ``--save-logits``: the per-class scores, float32 (C, H, W);

and ``DIR/classes.json`` (index → names). Every file is written to a temporary name and
renamed, so nothing is left half-written (a later run removes the temporary files of a
killed one). ``DIR`` may lie inside the image folder: it is not listed. Unreadable
images, and images the test pipeline cannot prepare (e.g. 40000×5 pixels), are skipped
with one warning each and listed at the end (exit status 0 when at least one image was
segmented). A batch holds images of one size after the test pipeline.

A training-free config (MaskCLIP) takes any class list (``--classes``: commas separate
classes, ``|`` separates synonyms of one class; ``--classes-file``: one class a line,
synonyms separated by commas). One class is predicted against an implicit class
``background`` (docs/own_data.md). A trained model (stage 1, the distilled student) is
tied to its training classes: asking it for others is an error listing its classes.

Built on mmseg's API: ``mmseg.apis.init_model``, then what ``inference_model`` does (the
config's ``test_pipeline`` and ``test_step``), in batches of one image size.
"""
import argparse
import copy
import glob
import json
import os
import os.path as osp
import sys
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

_REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

import mmseg_reclip  # noqa: E402,F401  # isort: skip
import numpy as np  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402

from mmseg_reclip.datasets.class_names import get_class_names  # noqa: E402
from mmseg_reclip.datasets.class_names import read_class_file, refuse_duplicate_names
from mmseg_reclip.datasets.templates import get_templates  # noqa: E402
from mmseg_reclip.datasets.unlabeled import IMAGE_EXTENSIONS, list_images  # noqa: E402
from mmseg_reclip.models.utils.class_set import check_same_classes  # noqa: E402
from mmseg_reclip.utils.io import atomic_write  # noqa: E402

TRAINING_FREE = {'MaskCLIP'}
LIST_EXTENSIONS = (
    '.txt', '.lst', '.list'
)  # a file of image paths, one a line  # segmentor types whose classes are free at run time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Segment images (file, folder, glob or list) with an mmseg-reclip '
        'config; training-free configs take any class list.')
    parser.add_argument(
        'images', help='image file, folder (recursive), glob, or a .txt '
        'list of image paths')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        'checkpoint',
        nargs='?',
        default='none',
        help="checkpoint file, or 'none' (training-free configs)")
    parser.add_argument('--out', required=True, help='output folder')
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        '--classes',
        help='class names separated by commas; synonyms of '
        'one class separated by "|", e.g. "cat,grass,person|people"')
    group.add_argument(
        '--classes-file',
        help='class-name file: one class a line, '
        'synonyms separated by commas, # comments')
    parser.add_argument(
        '--templates-file', help='prompt templates, one a line with {} '
        '(training-free configs)')
    parser.add_argument(
        '--device', default=None, help='cpu, cuda or cuda:N (default: cuda when available)')
    parser.add_argument('--batch-size', type=int, default=1, help='images per forward')
    parser.add_argument(
        '--opacity', type=float, default=0.5, help='opacity of the overlay colours, in (0, 1]')
    parser.add_argument(
        '--save-logits',
        action='store_true',
        help='also write the per-class scores (.npy, float32 C×H×W)')
    parser.add_argument('--show', action='store_true', help='show each overlay in a window')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, as in tools/test.py')
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f'--batch-size must be >= 1, got {args.batch_size}')
    if not 0 < args.opacity <= 1:
        parser.error(f'--opacity must be in (0, 1], got {args.opacity}')
    return args


# ---------------------------------------------------------------------------- inputs
def collect_images(spec: str, exclude: Optional[str] = None) -> Tuple[List[str], str]:
    """Image paths named by ``spec`` and the folder output names are relative to.

    Args:
        spec (str): an image file, a folder, a glob or a text file of paths.
        exclude (str, optional): a folder whose images are not listed from a folder or
            a glob (the output folder, when it lies inside the input folder).

    Returns:
        Tuple[List[str], str]: the paths (sorted, except a list keeps its order; each
        file once) and the base folder of their output names.

    Raises:
        FileNotFoundError / ValueError: nothing matches, or the list is empty.
    """
    excluded = [exclude] if exclude else []
    if osp.isdir(spec):
        paths = list_images(spec, exclude=excluded)
        if not paths:
            raise ValueError(f'no image under folder {osp.abspath(spec)!r} (looked '
                             f'recursively for {", ".join(IMAGE_EXTENSIONS)})')
        return paths, spec
    if osp.isfile(spec):
        if not spec.lower().endswith(LIST_EXTENSIONS):  # one image, of any format
            return [spec], osp.dirname(spec)
        base = osp.dirname(osp.abspath(spec))
        with open(spec, encoding='utf-8-sig') as f:
            lines = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith('#')]
        if not lines:
            raise ValueError(f'image list {spec!r} is empty; write one image path a line')
        paths = _unique([ln if osp.isabs(ln) else osp.join(base, ln) for ln in lines])
        return paths, osp.commonpath([osp.dirname(osp.abspath(p)) for p in paths])
    if glob.has_magic(spec):
        skip = osp.realpath(exclude) + os.sep if exclude else None
        paths = sorted(
            p for p in glob.glob(spec, recursive=True)
            if osp.isfile(p) and p.lower().endswith(IMAGE_EXTENSIONS)
            and not (skip and osp.realpath(p).startswith(skip)))
        if not paths:
            raise ValueError(f'no image matches {spec!r}')
        return paths, osp.commonpath([osp.dirname(osp.abspath(p)) for p in paths])
    raise FileNotFoundError(f'no such image, folder, glob or list: {osp.abspath(spec)!r}')


def _unique(paths: Sequence[str]) -> List[str]:
    """``paths`` without repeats of one file (first kept, order kept)."""
    seen, out = set(), []
    for p in paths:
        key = osp.normcase(osp.abspath(p))
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def requested_classes(args) -> Optional[List[List[str]]]:
    """The class list asked for on the command line (None: the config's)."""
    if args.classes_file:
        return get_class_names(read_class_file(args.classes_file))
    if args.classes is None:
        return None
    classes = [[n.strip() for n in entry.split('|')] for entry in args.classes.split(',')]
    if not any(any(names) for names in classes):
        raise ValueError('--classes is empty; give class names separated by commas')
    for i, names in enumerate(classes):
        if not all(names):
            raise ValueError(f'--classes {args.classes!r}: class {i} has an empty name '
                             '(two commas or "|" in a row?)')
    refuse_duplicate_names(classes, f'--classes {args.classes!r}')
    return get_class_names(classes)  # one class: + the implicit background


def output_names(paths: Sequence[str], base: str) -> List[str]:
    """Output name of each image, one-to-one: its path relative to ``base`` without
    extension, or with it where two images would share a name (``x.jpg``, ``x.png`` ->
    ``x.jpg``, ``x.png``; ``x_jpg.png`` stays ``x_jpg``). Names are compared ignoring
    case (case-insensitive file systems); the same file given twice gets one name.

    Args:
        paths (Sequence[str]): the image paths. base (str): the folder names are
            relative to (a path outside it is named by its file name).

    Returns:
        List[str]: one name per path, in order; distinct files get distinct names.
    """
    rel = [osp.relpath(osp.abspath(p), osp.abspath(base)) for p in paths]
    rel = [r if not r.startswith('..') else osp.basename(r) for r in rel]
    names = [osp.splitext(r)[0] for r in rel]
    # Keep the extension of every image whose name is shared; a kept extension can make
    # a name that another image's name equals (x.jpg.png -> 'x.jpg'), hence the loop.
    while True:
        owners: Dict[str, set] = {}
        for i, n in enumerate(names):
            owners.setdefault(n.casefold(), set()).add(rel[i])
        clash = [i for i, n in enumerate(names) if len(owners[n.casefold()]) > 1]
        if not any(names[i] != rel[i] for i in clash):
            break
        for i in clash:
            names[i] = rel[i]
    # Left: full names that differ in case only, or files outside base of one file name.
    used: Dict[str, str] = {}
    for i, n in enumerate(names):
        name, k = n, 1
        while used.setdefault(name.casefold(), rel[i]) != rel[i]:
            name, k = f'{n}~{k}', k + 1
        names[i] = name
    return names


# ---------------------------------------------------------------------------- model
def head_cfgs(cfg: Config) -> List[dict]:
    """The config dicts holding ``class_names``: the decode head, and the teacher's."""
    heads = [cfg.model.decode_head]
    if 'teacher' in cfg.model:
        heads.append(cfg.model.teacher.decode_head)
    return heads


def checkpoint_info(checkpoint: str) -> Tuple[Optional[Tuple[str, ...]], Optional[list]]:
    """(class names of ``meta.dataset_meta``, the head's ``name_to_class`` buffer) of a
    checkpoint; either is None when the checkpoint does not hold it."""
    from mmengine.runner.checkpoint import CheckpointLoader
    ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    if not isinstance(ckpt, dict):
        return None, None
    classes = ((ckpt.get('meta') or {}).get('dataset_meta') or {}).get('classes')
    state = ckpt.get('state_dict', ckpt)
    name_to_class = state.get('decode_head.name_to_class')
    return (tuple(classes) if classes else None,
            None if name_to_class is None else name_to_class.tolist())


def build_model(args, classes: Optional[List[List[str]]]):
    """Build the segmentor with mmseg's ``init_model``; returns (model, class names).

    Training-free configs are built with the requested classes and templates (the
    queries are computed from them). A trained model keeps its training classes: a
    request for others raises ValueError listing them.
    """
    from mmseg.apis import init_model
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    training_free = cfg.model.type in TRAINING_FREE
    checkpoint = None if args.checkpoint in (None, 'none') else args.checkpoint
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {osp.abspath(checkpoint)!r}')
    if not training_free and checkpoint is None:
        raise ValueError(f'{args.config} is a trained model ({cfg.model.type}): give its '
                         "checkpoint instead of 'none'.")
    if args.templates_file:
        if not training_free:
            raise ValueError('--templates-file: the prompt templates of a trained model are '
                             'fixed by its training; use a training-free (MaskCLIP) config.')
        get_templates(args.templates_file)  # a clear error before the model is built
        for head in head_cfgs(cfg):
            head['templates'] = args.templates_file
    trained, name_to_class = (None, None) if training_free else checkpoint_info(checkpoint)
    if classes is not None:
        if trained is not None and classes != _config_class_names(cfg):
            check_same_classes(
                trained,
                classes,
                'model',
                'classes asked for',
                subject=f'The model {checkpoint} was trained on',
                fix='It predicts only its classes: drop --classes/--classes-file, train a model on '
                'yours (configs/reclip/reclip_vit-b16_custom.py), or use a training-free config '
                '(configs/maskclip/maskclip_vit-b16_custom.py none).')
        for head in head_cfgs(cfg):
            head.update(class_names=classes, num_classes=len(classes))
    elif not training_free:
        try:
            get_class_names(cfg.model.decode_head.class_names)
        except (ValueError, FileNotFoundError) as err:
            raise ValueError(
                f'{err}. The model needs the class names it was trained with: pass its '
                'class-name file with --classes-file (or set CLASS_NAMES for the custom '
                f'configs){f"; its classes: {list(trained)}" if trained else ""}.') from None
    model = init_model(
        cfg, 'none' if checkpoint is None else checkpoint, device=args.device or _default_device())
    names = [list(n) for n in model.decode_head.class_names]
    model_n2c = getattr(model.decode_head, 'name_to_class', None)
    if name_to_class is not None and model_n2c is not None \
            and model_n2c.tolist() != name_to_class:
        # same class count, other synonyms: its trained queries do not fit these names
        raise ValueError(
            f'The model {checkpoint} was trained with {len(name_to_class)} class names '
            f'(synonyms included) mapped to classes {name_to_class}; the class list given '
            f'has {len(model_n2c)} ({names}). Use the class-name file it was trained with.')
    return model, names


def _config_class_names(cfg: Config) -> Optional[List[List[str]]]:
    """The class names the config gives the head (None if they cannot be read)."""
    try:
        return get_class_names(cfg.model.decode_head.class_names)
    except (ValueError, TypeError, FileNotFoundError):
        return None


def _default_device() -> str:
    import torch
    return 'cuda' if torch.cuda.is_available() else 'cpu'


# ---------------------------------------------------------------------------- outputs
def write_png(path: str, array: np.ndarray) -> None:
    import cv2

    # cv2.imencode + a plain file write: cv2.imwrite mangles non-ASCII paths on some
    # platforms.
    ok, buf = cv2.imencode('.png', array)
    if not ok:
        raise IOError(f'could not encode {path}')
    atomic_write(path, lambda f: f.write(buf.tobytes()))


def write_npy(path: str, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, array))


def write_json(path: str, obj) -> None:
    text = json.dumps(obj, indent=2, ensure_ascii=False)
    atomic_write(path, lambda f: f.write(text.encode('utf-8')))


def overlay(rgb: np.ndarray,
            label: np.ndarray,
            names: Sequence[str],
            opacity: float,
            palette: Optional[Sequence[Sequence[int]]] = None) -> np.ndarray:
    """The label colours over the photo, with a legend of the classes present (RGB).

    Args:
        rgb (np.ndarray): uint8 (H, W, 3) photo. label (np.ndarray): (H, W) class
            indices. names: one name per class. opacity: weight of the colours.
        palette: one RGB colour per class (the model's ``dataset_meta['palette']``).
    """
    import imgviz
    colormap = None if palette is None else np.asarray(palette, dtype=np.uint8)
    return imgviz.label2rgb(
        label.astype(np.int32),
        image=rgb,
        alpha=opacity,
        label_names=list(names),
        font_size=max(12, rgb.shape[0] // 40),
        loc='rb',
        colormap=colormap)


def read_image(path: str) -> Optional[np.ndarray]:
    """BGR uint8 image, or None when it cannot be read (as mmcv's loader reads it)."""
    import mmcv
    try:
        with open(path, 'rb') as f:
            data = f.read()
        img = mmcv.imfrombytes(data, flag='color', backend='cv2')
    except Exception:  # unreadable file of any kind: the caller skips it
        return None
    return img if img is not None and img.size else None


def check_out_folder(out: str) -> None:
    """Refuse an ``--out`` that is, or lies below, an existing file (before any work)."""
    path = out
    while not osp.isdir(path):
        if osp.lexists(path):
            raise ValueError(f'--out {out!r}: {path!r} is an existing file, not a folder; '
                             'give a folder for the outputs (it is created if missing)')
        parent = osp.dirname(path)
        if parent == path:
            break
        path = parent


def remove_leftovers(out: str) -> None:
    """Delete the temporary files that a killed run left in the folders it writes."""
    from mmseg_reclip.engine.runner.work_dir import remove_stale_tmp_files
    remove_stale_tmp_files(out)
    for sub in ('label', 'overlay', 'logits'):
        for folder, _, _ in os.walk(osp.join(out, sub)):
            remove_stale_tmp_files(folder)


class Batcher:
    """Prepares images with the model's test pipeline (as mmseg's ``inference_model``)
    and groups them into batches of one input size: mmseg's data preprocessor cannot
    stack other sizes, and padding would change the predictions. A group is run when
    it holds ``batch_size`` images; the oldest group is run early when more than
    ``4 * batch_size`` images wait, so memory stays bounded.
    """

    def __init__(self, model, batch_size: int):
        from mmcv.transforms import Compose
        pipeline = copy.deepcopy(model.cfg.test_pipeline)
        pipeline = [t for t in pipeline if t.get('type') != 'LoadAnnotations']
        pipeline[0] = dict(pipeline[0], type='LoadImageFromNDArray')
        self.pipeline = Compose(pipeline)
        self.model = model
        self.batch_size = batch_size
        self.groups: 'OrderedDict[tuple, list]' = OrderedDict()

    def prepare(self, img: np.ndarray) -> dict:
        """The pipeline's output for one image (raises what the pipeline raises)."""
        return self.pipeline(dict(img=img))

    def add(self, key, img: np.ndarray, data: dict) -> list:
        """Queue one prepared image; returns the ``(key, img, result)`` of what ran."""
        shape = tuple(data['inputs'].shape)
        self.groups.setdefault(shape, []).append((key, img, data))
        if len(self.groups[shape]) >= self.batch_size:
            return self._run(self.groups.pop(shape))
        if sum(len(g) for g in self.groups.values()) > 4 * self.batch_size:
            return self._run(self.groups.popitem(last=False)[1])
        return []

    def flush(self) -> list:
        done = []
        while self.groups:
            done += self._run(self.groups.popitem(last=False)[1])
        return done

    def _run(self, items: list) -> list:
        import torch
        batch = dict(
            inputs=[d['inputs'] for _, _, d in items],
            data_samples=[d['data_samples'] for _, _, d in items])
        with torch.no_grad():
            results = self.model.test_step(batch)
        return [(key, img, result) for (key, img, _), result in zip(items, results)]


# ---------------------------------------------------------------------------- main
def main(argv=None) -> int:
    args = parse_args(argv)
    from mmengine.logging import print_log
    from mmengine.utils import ProgressBar
    out = osp.abspath(args.out)
    check_out_folder(out)
    classes = requested_classes(args)
    paths, base = collect_images(args.images, exclude=out)
    model, class_names = build_model(args, classes)
    names = [n[0] for n in class_names]
    os.makedirs(out, exist_ok=True)
    remove_leftovers(out)
    write_json(osp.join(out, 'classes.json'), {str(i): n for i, n in enumerate(class_names)})
    dtype = np.uint8 if len(names) <= 256 else np.uint16
    palette = (getattr(model, 'dataset_meta', None) or {}).get('palette')
    if palette is None or len(palette) != len(names):
        from mmseg_reclip.models.utils.model_meta import class_palette
        palette = class_palette(len(names))
    out_names = output_names(paths, base)
    unreadable: List[str] = []
    unprepared: List[str] = []
    done = 0
    bar = ProgressBar(len(paths))
    batcher = Batcher(model, args.batch_size)

    def write(ran) -> None:
        nonlocal done
        for i, img, result in ran:
            name = out_names[i]
            label = result.pred_sem_seg.data[0].cpu().numpy().astype(dtype)
            write_png(osp.join(out, 'label', name + '.png'), label)
            vis = overlay(img[:, :, ::-1], label, names, args.opacity, palette)
            write_png(osp.join(out, 'overlay', name + '.png'), vis[:, :, ::-1])
            if args.save_logits:
                logits = result.seg_logits.data.float().cpu().numpy()
                write_npy(osp.join(out, 'logits', name + '.npy'), logits)
            if args.show:
                import mmcv
                mmcv.imshow(vis[:, :, ::-1], win_name=name, wait_time=0)
            done += 1
            bar.update()

    for i, path in enumerate(paths):
        img = read_image(path)
        if img is None:
            print_log(f'skipped (not a readable image): {path}', logger='current', level=30)
            unreadable.append(path)
            bar.update()
            continue
        try:
            data = batcher.prepare(img)
        except Exception as err:  # this image only (e.g. a side resized to 0 pixels)
            reason = (str(err).strip().splitlines() or [type(err).__name__])[-1]
            line = f'{path} ({img.shape[1]}x{img.shape[0]} pixels: {reason})'
            print_log(
                f'skipped (the test pipeline cannot prepare it): {line}',
                logger='current',
                level=30)
            unprepared.append(line)
            bar.update()
            continue
        write(batcher.add(i, img, data))
    write(batcher.flush())
    sys.stdout.write('\n')
    print(f'{done} image(s) segmented into {len(names)} classes -> {out} '
          '(overlay/, label/' + (', logits/' if args.save_logits else '') + ', classes.json)')
    if unreadable:
        print(f'{len(unreadable)} unreadable image(s) skipped:')
        for p in unreadable:
            print(f'  {p}')
    if unprepared:
        print(f'{len(unprepared)} image(s) skipped that the test pipeline cannot prepare '
              '(e.g. too wide or too tall to resize to the test scale):')
        for p in unprepared:
            print(f'  {p}')
    return 0 if done else 1


if __name__ == '__main__':
    try:
        sys.exit(main())
    except (ValueError, FileNotFoundError) as err:
        print(f'tools/infer.py: error: {err}', file=sys.stderr)
        sys.exit(2)
