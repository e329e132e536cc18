#!/usr/bin/env python
"""Write the stage-1 teacher's argmax masks of every training image (offline distillation).

    python tools/generate_pseudo_labels.py CONFIG [--out-dir DIR]
        [--teacher-checkpoint PATH] [--device cpu|cuda] [--cfg-options KEY=VALUE ...]

CONFIG is a distillation config (``model.type='ReCLIPDistiller'``); the teacher is
``model.teacher`` loaded from ``model.teacher_checkpoint`` (with the distiller's checks),
the images are those of ``train_dataloader.dataset`` (their label files are never
opened), the output folder is ``--out-dir`` or the config's ``pseudo_label_dir``.
Each image is resized like the test pipeline (``test_scale`` of the config, keep ratio),
normalised by the distiller's data preprocessor, predicted by the teacher in ``whole``
mode and the argmax, at the image's original size, written as ``<basename>.png`` (uint8
class indices) — each file atomically (temporary file + rename).

``meta.json`` in the folder records what produced the labels (the SHA-256 of the teacher
checkpoint, test scale, classes: the set's key) and, per label, the SHA-256 of the image
it was predicted from. A rerun with the same key writes the labels that are missing or
whose image changed (same name, other content); a different key deletes the old PNGs
first. ``meta.json`` says ``complete: true`` only once every label is written and up to
date; ``LoadPseudoLabel`` refuses any other set. Then train with the offline config, e.g.
``configs/reclip/reclip-distill_deeplabv2-r101_voc_offline.py``.
"""
import argparse
import glob
import hashlib
import json
import logging
import os
import os.path as osp
import sys

_REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

import mmseg_reclip  # noqa: E402,F401  # isort: skip
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.dataset import Compose  # noqa: E402
from mmengine.logging import print_log  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from PIL import Image  # noqa: E402

from mmseg_reclip.datasets.image_listing import collect_img_paths  # noqa: E402
from mmseg_reclip.datasets.transforms.pseudo_label import PSEUDO_LABEL_META  # noqa: E402
from mmseg_reclip.datasets.transforms.pseudo_label import pseudo_label_name
from mmseg_reclip.engine.runner.work_dir import remove_stale_tmp_files  # noqa: E402
from mmseg_reclip.utils.io import atomic_write  # noqa: E402

META_FILE = PSEUDO_LABEL_META


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Write teacher pseudo labels')
    parser.add_argument('config', help='distillation config')
    parser.add_argument('--out-dir', help='output folder (default: cfg.pseudo_label_dir)')
    parser.add_argument('--teacher-checkpoint', help='override model.teacher_checkpoint')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, as in tools/train.py')
    return parser.parse_args(argv)


def teacher_identity(path: str) -> str:
    """The teacher checkpoint's identity in the label set's key: the SHA-256 of its
    bytes. Another teacher saved at the same path (even with the same size and mtime)
    makes every label stale; the same file moved or copied keeps them."""
    return 'sha256:' + image_digest(path)


def image_digest(path: str) -> str:
    """SHA-256 of a file (an image: a label is up to date only for the exact same
    bytes)."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def read_meta(path: str) -> dict:
    """``meta.json`` as a dict; ``{}`` when missing or unreadable (then all is redone)."""
    if not osp.isfile(path):
        return {}
    try:
        with open(path) as f:
            meta = json.load(f)
        return meta if isinstance(meta, dict) else {}
    except (OSError, ValueError) as err:
        print_log(
            f'{path} is unreadable ({err}); regenerating every pseudo label.',
            logger='current',
            level=logging.WARNING)
        return {}


def save_png_atomic(label: np.ndarray, path: str) -> None:
    """Write a ``uint8`` label map as a PNG through :func:`atomic_write`."""
    atomic_write(path,
                 lambda f: Image.fromarray(label.astype(np.uint8), mode='L').save(f, format='PNG'))


def write_json_atomic(obj: dict, path: str) -> None:
    """Write ``obj`` as JSON through :func:`atomic_write`."""
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    from mmseg.registry import DATASETS, MODELS

    if cfg.model.get('type') != 'ReCLIPDistiller':
        raise ValueError(f'{args.config} is not a distillation config (model.type='
                         f'{cfg.model.get("type")!r}, expected ReCLIPDistiller).')
    if args.teacher_checkpoint:
        cfg.model.teacher_checkpoint = args.teacher_checkpoint
    out_dir = args.out_dir or cfg.get('pseudo_label_dir')
    if not out_dir:
        raise ValueError('Give --out-dir or set pseudo_label_dir in the config.')
    os.makedirs(out_dir, exist_ok=True)

    model = MODELS.build(cfg.model)
    model.to(args.device).eval()
    teacher = model.teacher  # built, loaded and checked like in training
    num_classes = model.decode_head.num_classes
    if num_classes > 255:
        raise ValueError('More than 255 classes do not fit a uint8 PNG.')

    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    img_paths = collect_img_paths(dataset)
    names = [pseudo_label_name(p) for p in img_paths]
    if len(set(names)) != len(names):
        raise ValueError('Training images share basenames; pseudo labels are stored by '
                         'basename, so they would overwrite each other.')

    test_scale = cfg.get('test_scale')
    key = dict(
        teacher=teacher_identity(cfg.model.teacher_checkpoint),
        test_scale=list(test_scale) if test_scale else None,
        num_classes=num_classes,
        mean=[float(v) for v in model.data_preprocessor.mean.flatten()],
        std=[float(v) for v in model.data_preprocessor.std.flatten()],
        version=2)
    meta_path = osp.join(out_dir, META_FILE)
    remove_stale_tmp_files(out_dir)  # left by a run killed mid-write
    old_meta = read_meta(meta_path)
    old = old_meta.get('key')
    done = old_meta.get('images') if old == key else None
    done = done if isinstance(done, dict) else {}
    if old != key:
        stale = glob.glob(osp.join(out_dir, '*.png'))
        if stale:
            print_log(
                f'{out_dir}: other pseudo labels ({old}); deleting {len(stale)} files',
                logger='current')
        for path in stale:
            os.remove(path)
    # Each label is keyed by its image's content: a replaced image is predicted again.
    print_log(f'Hashing {len(img_paths)} training images (SHA-256)', logger='current')
    digests = [image_digest(p) for p in img_paths]
    valid = {
        n: d
        for n, d in zip(names, digests) if done.get(n) == d and osp.exists(osp.join(out_dir, n))
    }
    changed = sum(1 for n in names if n in done and n not in valid)
    if changed:
        print_log(
            f'{out_dir}: {changed} image(s) changed since their pseudo label was '
            'written; predicting them again.',
            logger='current')
    write_json_atomic(dict(key=key, complete=False, images=valid), meta_path)

    steps = [dict(type='LoadImageFromFile')]
    if test_scale:
        steps.append(dict(type='Resize', scale=tuple(test_scale), keep_ratio=True))
    steps.append(dict(type='PackSegInputs'))
    pipeline = Compose(steps)

    written = 0
    for i, (img_path, name, digest) in enumerate(zip(img_paths, names, digests)):
        out_path = osp.join(out_dir, name)
        if name not in valid:
            packed = pipeline(dict(img_path=img_path, seg_fields=[], reduce_zero_label=False))
            data = model.data_preprocessor(
                dict(inputs=[packed['inputs']], data_samples=[packed['data_samples']]), False)
            with torch.no_grad():
                pred = teacher.predict(data['inputs'], data['data_samples'])[0]
            label = pred.pred_sem_seg.data[0].cpu().numpy().astype(np.uint8)
            save_png_atomic(label, out_path)
            valid[name] = digest
            written += 1
        if (i + 1) % 100 == 0 or i + 1 == len(img_paths):
            print_log(f'Pseudo labels: {i + 1}/{len(img_paths)}', logger='current')
    write_json_atomic(dict(key=key, complete=True, images=valid), meta_path)
    print_log(
        f'Pseudo labels in {out_dir}: {written} written, '
        f'{len(img_paths) - written} up to date.',
        logger='current')


if __name__ == '__main__':
    main()
