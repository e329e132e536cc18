"""Convert COCO-Stuff-164k label maps to the 27 mid-level classes.

Usage::

    python tools/dataset_converters/coco_stuff27.py data/coco_stuff164k \
        [--nproc 8] [--splits train2017 val2017]

Expected input (mmseg's COCO-Stuff-164k layout, ``stuffthingmaps_trainval2017``
unzipped into ``annotations``)::

    COCO_STUFF_ROOT/annotations/{train2017,val2017}/<image id>.png

Each raw map (0-based COCO-Stuff ids 0..181, 255 unlabeled) is mapped with
:func:`mmseg_reclip.datasets.coco_stuff27.convert_labels` and written next to
it as ``<image id>_labelTrainIds27.png`` (values 0..26, 255 ignore). Files
already carrying a ``_labelTrainIds*`` suffix (outputs of this or of mmseg's
171-class converter) are skipped as inputs. Every output is written to a
temporary file in the same folder, then moved into place with ``os.replace``,
so an interrupted run never leaves a truncated PNG.
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Sequence

import numpy as np
from PIL import Image

try:
    from mmseg_reclip.datasets.coco_stuff27 import COCOSTUFF27_SEG_MAP_SUFFIX, convert_labels
    from mmseg_reclip.utils.io import atomic_write
except ImportError:  # running from a source checkout that is not installed
    sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
    from mmseg_reclip.datasets.coco_stuff27 import (COCOSTUFF27_SEG_MAP_SUFFIX, convert_labels)
    from mmseg_reclip.utils.io import atomic_write

import mmengine  # noqa: E402

RAW_SUFFIX = '.png'


def find_raw_label_maps(root: str, splits: Sequence[str]) -> List[str]:
    """List the raw COCO-Stuff label maps under ``root/annotations/<split>``.

    Args:
        root (str): COCO-Stuff-164k root folder.
        splits (Sequence[str]): split folder names, e.g. ``('train2017',)``.

    Returns:
        List[str]: sorted paths of raw label PNGs (converted maps excluded).
    """
    paths = []
    for split in splits:
        folder = osp.join(root, 'annotations', split)
        if not osp.isdir(folder):
            print(f'warning: {folder} not found, skipped', file=sys.stderr)
            continue
        for name in sorted(os.listdir(folder)):
            if not name.endswith(RAW_SUFFIX) or '_labelTrainIds' in name:
                continue
            paths.append(osp.join(folder, name))
    return paths


def output_path(raw_path: str) -> str:
    """Return the converted-map path for a raw label map.

    Args:
        raw_path (str): ``.../<image id>.png``.

    Returns:
        str: ``.../<image id>_labelTrainIds27.png``.
    """
    return raw_path[:-len(RAW_SUFFIX)] + COCOSTUFF27_SEG_MAP_SUFFIX


def convert_file(raw_path: str) -> str:
    """Convert one raw label map and write it atomically.

    Args:
        raw_path (str): path of a raw COCO-Stuff-164k label PNG.

    Returns:
        str: the path written.
    """
    with Image.open(raw_path) as img:
        label = np.array(img)
    if label.ndim != 2:
        raise ValueError(f'{raw_path}: expected a single-channel label map, '
                         f'got shape {label.shape}')
    out = convert_labels(label)
    dst = output_path(raw_path)
    atomic_write(dst, lambda f: Image.fromarray(out, mode='L').save(f, format='PNG'))
    return dst


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert COCO-Stuff-164k label maps (182 ids) to the '
        '27 mid-level classes of the unsupervised protocol.')
    parser.add_argument('coco_stuff_root', help='COCO-Stuff-164k root folder')
    parser.add_argument('--nproc', type=int, default=1, help='number of worker processes')
    parser.add_argument(
        '--splits',
        nargs='+',
        default=['train2017', 'val2017'],
        help='split folders under annotations/')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    paths = find_raw_label_maps(args.coco_stuff_root, args.splits)
    if not paths:
        print(f'no raw label maps found under {args.coco_stuff_root}', file=sys.stderr)
        return 1
    if args.nproc > 1:
        mmengine.track_parallel_progress(convert_file, paths, args.nproc)
    else:
        mmengine.track_progress(convert_file, paths)
    print(f'\nconverted {len(paths)} label maps '
          f'(suffix {COCOSTUFF27_SEG_MAP_SUFFIX})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
