#!/usr/bin/env python
"""See the bias: the ReCLIP++ paper's bias scores and figures for any model and dataset.

::

    python tools/analysis_tools/bias_report.py CONFIG [CKPT] --out DIR
        [--compare CONFIG [CKPT]]... [--names A B ...]
        [--images IMG ...] [--num-images N] [--classes a,b] [--max-classes K]
        [--bias-grid H W] [--bins 0,0.2,...] [--no-eval] [--banner TEXT]
        [--overwrite] [--cfg-options KEY=VALUE ...] [--debug]

For each model (the positional CONFIG [CKPT], then every ``--compare CONFIG [CKPT]``),
it writes into ``DIR``:

- ``fig1a_distance_curve.png``: mIoU vs. the normalised distance of an object's centroid
  from the image centre (paper Fig. 1a), every model on one plot;
- ``fig1b_confusion_<model>.png``: the row-normalised confusion matrix (paper Fig. 1b)
  with the most-confused pairs;
- ``fig4_<model>_<image>.png`` (+ ``.npz`` with the plotted arrays): image, ground truth
  (dataset images), the query logits ``Lq``, bias logits ``B`` and rectified logits
  ``Lr`` of chosen classes (one colour scale per class row) and the final masks
  (paper Fig. 4); MaskCLIP (no bias) shows ``Lq`` and the masks;
- ``bias_<model>.png`` (+ ``.npz``): the bias map ``B`` of every class from the trained
  head alone (no image, no dataset, no ground truth);
- ``scores.json``: class-preference score, space-preference slope, the curve and mIoU
  of each model; ``report.html`` showing all of it.

The scores come from running the config's test set through an mmengine Runner with
:class:`ClassPreferenceMetric`, :class:`SpacePreferenceMetric` and ``IoUMetric``. Without
the dataset (or with ``--no-eval``) only the bias maps and Fig. 4 (on ``--images``) are
made. ``--cfg-options`` applies to every model.

Before any model is built, every test set to be evaluated is checked: one with images
but without their labels stops the tool (naming the model and a missing label file,
and suggesting ``--no-eval``) instead of failing after the first model's evaluation. A
run's files are written into a temporary folder beside ``DIR`` and moved in whole when
the report is complete, so ``DIR`` never mixes two runs; a non-empty ``DIR`` is refused
unless ``--overwrite`` is given (it is then replaced). A failed run leaves no files.
"""
import argparse
import html
import json
import os
import os.path as osp
import re
import shutil
import sys
import tempfile
import time
from typing import Dict, List, Optional

_REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

# compat glue + registries
import mmseg_reclip  # noqa: E402,F401  # isort: skip
import matplotlib  # noqa: E402

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.dataset import Compose  # noqa: E402
from mmengine.logging import print_log  # noqa: E402
from mmengine.model import is_model_wrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mmseg_reclip.evaluation.bias_maps import bias_map, compute_bias_maps, head_kind  # noqa
from mmseg_reclip.evaluation.metrics.class_preference_metric import \
    class_preference_scores  # noqa: E402
from mmseg_reclip.utils import adapt_cfg_to_device  # noqa: E402
from mmseg_reclip.utils.cli import add_debug_argument, run_main  # noqa: E402
from mmseg_reclip.utils.io import TMP_PREFIX  # noqa: E402

_NO_CHECKPOINT = ('', 'none', 'None', 'null')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Bias report of ReCLIP++ / MaskCLIP models (paper Fig. 1, Fig. 4, '
        'Table VII)')
    parser.add_argument('config', help='config of the first model')
    parser.add_argument(
        'checkpoint',
        nargs='?',
        default=None,
        help='its checkpoint (none for training-free MaskCLIP)')
    parser.add_argument(
        '--compare',
        nargs='+',
        action='append',
        default=[],
        metavar='CONFIG [CKPT]',
        help='another model on the same plots (repeatable)')
    parser.add_argument('--names', nargs='+', help='model names (default: config names)')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace a non-empty --out folder (default: refuse it)')
    parser.add_argument(
        '--images',
        nargs='+',
        default=[],
        help='image files for Fig. 4 (no ground truth needed); default: '
        'the first --num-images images of the test set')
    parser.add_argument(
        '--num-images',
        type=int,
        default=2,
        help='test-set images for Fig. 4 when --images is not given')
    parser.add_argument(
        '--classes',
        default=None,
        help='comma-separated class names shown in Fig. 4 (default: the '
        'classes of the ground truth and prediction, largest first)')
    parser.add_argument(
        '--max-classes', type=int, default=4, help='classes per Fig. 4 when --classes is not given')
    parser.add_argument(
        '--bias-grid',
        type=int,
        nargs=2,
        default=(21, 21),
        metavar=('H', 'W'),
        help='grid of the stand-alone bias map (21 21: ViT-B/16 at 336 px)')
    parser.add_argument(
        '--bins',
        default=None,
        help='distance bin edges of the space-preference metric, e.g. '
        '0,0.2,0.4,0.6,0.8,1 (default: the metric\'s)')
    parser.add_argument(
        '--no-eval', action='store_true', help='skip the dataset evaluation (scores, Fig. 1)')
    parser.add_argument(
        '--banner',
        default=None,
        help='text written in red on every figure (e.g. "RANDOM CLIP '
        'WEIGHTS - meaningless")')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='config overrides (key=value), applied to every model')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    models = [[args.config, args.checkpoint]]
    for entry in args.compare:
        if len(entry) > 2:
            parser.error(f'--compare takes CONFIG [CKPT], got {entry}')
        models.append([entry[0], entry[1] if len(entry) == 2 else None])
    for m in models:
        if m[1] in _NO_CHECKPOINT:
            m[1] = None
        if not osp.isfile(m[0]):
            parser.error(f'config not found: {m[0]!r}')
        if m[1] is not None and '://' not in m[1] and not osp.isfile(m[1]):
            parser.error(f'checkpoint not found: {m[1]!r}')
    names = args.names or [osp.splitext(osp.basename(c))[0] for c, _ in models]
    if len(names) != len(models):
        parser.error(f'--names gives {len(names)} names for {len(models)} models')
    if len(set(names)) != len(names):
        names = [f'{i}_{n}' for i, n in enumerate(names)]
    args.models = [
        dict(config=c, checkpoint=k, name=safe_name(n)) for (c, k), n in zip(models, names)
    ]
    if args.bins:
        try:
            edges = [float(b) for b in args.bins.split(',')]
        except ValueError:
            parser.error(f'--bins: not a comma-separated list of numbers: {args.bins!r}')
        if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
            parser.error(f'--bins: need at least two increasing edges, e.g. '
                         f'0,0.2,0.4,0.6,0.8,1; got {args.bins!r}')
    for path in args.images:
        if not osp.isfile(path):
            parser.error(f'--images: no file at {path!r}')
    return args


def safe_name(text: str) -> str:
    return re.sub(r'[^A-Za-z0-9_.+-]', '_', text)


# -- models, data and scores -------------------------------------------------------------


def model_cfg(spec: dict, args) -> Config:
    """The model's config with ``--cfg-options`` applied."""
    cfg = Config.fromfile(spec['config'])
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def missing_labels(dataset) -> List[str]:
    """The label files a test set lists but lacks (``seg_map_path`` of each sample)."""
    missing = []
    for i in range(len(dataset)):
        path = dataset.get_data_info(i).get('seg_map_path')
        if not path or not osp.isfile(path):
            missing.append(path or f'(no label for {dataset.get_data_info(i).get("img_path")})')
    return missing


def check_test_sets(args) -> Dict[str, bool]:
    """Which models are evaluated (name -> bool), decided before any model is built.

    A model without a test set (its dataset cannot be built) is not evaluated (bias
    maps and Fig. 4 on ``--images`` only, as documented); one whose test set lacks
    labels stops the tool: its scores cannot be computed.

    Raises:
        FileNotFoundError: a test set has images without labels.
    """
    evaluated = {}
    for spec in args.models:
        name = spec['name']
        evaluated[name] = False
        if args.no_eval:
            continue
        cfg = model_cfg(spec, args)
        init_default_scope(cfg.get('default_scope', 'mmseg'))  # as the Runner will
        try:
            dataset = build_test_dataset(cfg)
        except (FileNotFoundError, OSError, AssertionError) as err:
            print_log(
                f'{name}: no test set ({err}); skipping the scores and Fig. 1 '
                '(bias maps and Fig. 4 on --images only).',
                logger='current')
            continue
        missing = missing_labels(dataset)
        if missing:
            raise FileNotFoundError(
                f'{name} ({spec["config"]}): {len(missing)} of {len(dataset)} test images '
                f'have no label (e.g. {missing[0]}); the scores need ground truth. Run with '
                '--no-eval for the bias maps and Fig. 4 only (with --images for any '
                'image), or point the config at a labelled test set.')
        evaluated[name] = True
    return evaluated


def prepare_out(out: str, overwrite: bool) -> str:
    """A new temporary folder beside ``out`` for this run's files.

    Raises:
        FileExistsError: ``out`` is a non-empty folder and ``overwrite`` is off.
        NotADirectoryError: ``out`` is a file.
    """
    if osp.exists(out) and not osp.isdir(out):
        raise NotADirectoryError(f'--out {out!r} is a file; give a folder')
    if osp.isdir(out) and os.listdir(out) and not overwrite:
        raise FileExistsError(f'--out {out!r} is not empty (a previous report?); give a new '
                              'folder, or --overwrite to replace it')
    parent = osp.dirname(out)
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=f'{TMP_PREFIX}{osp.basename(out)}_', dir=parent)


def publish_out(tmp: str, out: str) -> None:
    """Move the finished run's folder to ``out``, replacing what was there."""
    old = None
    if osp.lexists(out):
        old = tempfile.mkdtemp(prefix=f'{TMP_PREFIX}{osp.basename(out)}_old_', dir=osp.dirname(out))
        os.replace(out, osp.join(old, 'previous'))
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_runner(spec: dict, args, bins: Optional[List[float]], out: str) -> Runner:
    """An mmengine Runner of the model's config, testing with the bias metrics."""
    cfg = model_cfg(spec, args)
    cfg.work_dir = osp.join(out, 'work_dirs', spec['name'])
    cfg.load_from = spec['checkpoint']
    cfg.resume = False
    cfg.experiment_name = f'bias_report_{spec["name"]}_{time.strftime("%Y%m%d_%H%M%S")}'
    space = dict(type='SpacePreferenceMetric')
    if bins is not None:
        space['bins'] = bins
    cfg.test_evaluator = [
        dict(type='IoUMetric', iou_metrics=['mIoU']),
        dict(type='ClassPreferenceMetric'), space
    ]
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper', 'param_scheduler',
                'val_dataloader', 'val_cfg', 'val_evaluator'):
        cfg[key] = None
    cfg.custom_hooks = [
        h for h in cfg.get('custom_hooks', []) or [] if h.get('type') != 'CropVoteHypothesisHook'
    ]  # training only
    adapt_cfg_to_device(cfg)
    return Runner.from_cfg(cfg)


def unwrap(model):
    return model.module if is_model_wrapper(model) else model


def class_names(model) -> List[str]:
    return [names[0] for names in unwrap(model).decode_head.class_names]


def evaluate(runner: Runner) -> dict:
    """Run the test set; the scores, the confusion matrix and the distance curve."""
    metrics = runner.test()
    found = {type(m).__name__: m for m in runner.test_loop.evaluator.metrics}
    curve = found['SpacePreferenceMetric'].curve
    return dict(
        mIoU=float(metrics['mIoU']),
        class_pref=float(metrics['class_pref']),
        class_pref_per_class=metrics['class_pref_per_class'],
        class_pref_confused=metrics['class_pref_confused'],
        space_pref=float(metrics['space_pref']),
        space_pref_curve=dict(
            bins=curve['bins'],
            centres=curve['centres'],
            miou=[None if m != m else m * 100 for m in curve['miou']],
            objects=curve['objects']),
        confusion=found['ClassPreferenceMetric'].confusion,
        classes=list(found['ClassPreferenceMetric'].dataset_meta['classes']))


def build_test_dataset(cfg: Config):
    from mmseg.registry import DATASETS
    return DATASETS.build(cfg.test_dataloader.dataset)


def image_only_pipeline(cfg: Config) -> Compose:
    """The config's test pipeline without the annotation loading (any image file)."""
    steps = [t for t in cfg.test_dataloader.dataset.pipeline if t['type'] != 'LoadAnnotations']
    return Compose(steps)


def fig4_samples(runner: Runner, args, evaluated: bool) -> List[dict]:
    """``[{name, data}]``: the pipeline outputs of ``--images`` or of test-set images."""
    cfg = runner.cfg
    if args.images:
        pipeline = image_only_pipeline(cfg)
        return [
            dict(name=safe_name(osp.splitext(osp.basename(p))[0]), data=pipeline(dict(img_path=p)))
            for p in args.images
        ]
    if not evaluated or args.num_images <= 0:
        return []
    dataset = build_test_dataset(cfg)
    out = []
    for i in range(min(args.num_images, len(dataset))):
        data = dataset[i]
        name = osp.splitext(osp.basename(data['data_samples'].img_path))[0]
        out.append(dict(name=safe_name(name), data=data))
    return out


def bias_arrays(model, data: dict) -> Dict[str, np.ndarray]:
    """Fig. 4 arrays of one sample: inputs, display image, GT, Lq, B, Lr, masks."""
    batch = model.data_preprocessor(
        dict(inputs=[data['inputs']], data_samples=[data['data_samples']]), False)
    inputs = batch['inputs']
    meta = batch['data_samples'][0].metainfo
    padding = meta.get('img_padding_size', meta.get('padding_size')) or (0, 0, 0, 0)
    maps = compute_bias_maps(model, inputs, padding)
    sample = data['data_samples']
    h, w = sample.metainfo.get('img_shape', inputs.shape[-2:])[:2]
    image = data['inputs'].numpy().transpose(1, 2, 0)
    if unwrap(model).data_preprocessor.channel_conversion:
        image = image[:, :, ::-1]  # BGR (loaded) -> RGB (shown)
    arrays = dict(
        inputs=inputs.cpu().numpy(),
        image=np.ascontiguousarray(image[:h, :w]),
        masks=maps['masks'][0, :h, :w].cpu().numpy(),
        Lq=maps['Lq'][0].cpu().numpy())
    for key in ('B', 'Lr', 'logits'):
        if key in maps:
            value = maps[key]
            # B is [C, h, w], or [N, C, h, w] for an image-dependent bias (conference)
            per_image = key != 'B' or value.dim() == 4
            arrays[key] = (value[0] if per_image else value).cpu().numpy()
    if 'gt_sem_seg' in sample:
        import cv2
        gt = sample.gt_sem_seg.data[0].cpu().numpy().astype(np.uint8)
        arrays['gt'] = cv2.resize(gt, (w, h), interpolation=cv2.INTER_NEAREST)
    return arrays


def choose_classes(arrays: dict, names: List[str], args) -> np.ndarray:
    if args.classes:
        wanted = [c.strip() for c in args.classes.split(',') if c.strip()]
        unknown = [c for c in wanted if c not in names]
        if unknown:
            raise SystemExit(f'--classes: unknown class(es) {unknown}; the model\'s classes '
                             f'are {names}')
        return np.array([names.index(c) for c in wanted])
    order = []
    for key in ('gt', 'masks'):
        if key in arrays:
            ids, counts = np.unique(arrays[key], return_counts=True)
            keep = ids < len(names)
            order += [int(i) for i in ids[keep][np.argsort(-counts[keep])] if i not in order]
    return np.array(order[:args.max_classes] or [0])


# -- figures -----------------------------------------------------------------------------


def palette_for(num: int) -> np.ndarray:
    cmap = plt.get_cmap('tab20', 20)
    colours = (np.array([cmap(i % 20)[:3] for i in range(num)]) * 255).astype(np.uint8)
    return np.concatenate([colours, np.zeros((256 - num, 3), np.uint8)]) \
        if num < 256 else colours


def colourise(label: np.ndarray, num: int) -> np.ndarray:
    """Class ids → RGB (ignored / out-of-range ids black)."""
    pal = palette_for(num)
    out = pal[np.clip(label, 0, len(pal) - 1)]
    out[label >= num] = 0
    return out


def add_banner(fig, banner: Optional[str]) -> None:
    if banner:
        fig.text(
            0.5,
            0.005,
            banner,
            ha='center',
            va='bottom',
            color='white',
            fontsize=11,
            fontweight='bold',
            bbox=dict(facecolor='#c80000', edgecolor='none'))


def save(fig, path: str) -> str:
    fig.savefig(path, dpi=80, bbox_inches='tight')
    plt.close(fig)
    return path


def plot_fig4(arrays: dict, classes: np.ndarray, names: List[str], title: str,
              banner: Optional[str], path: str) -> str:
    """Image / GT / masks, then per class row ``Lq``, ``B``, ``Lr`` (shared colour scale
    per row), exactly the arrays in ``arrays`` (saved beside the PNG)."""
    maps = [k for k in ('Lq', 'B', 'Lr') if k in arrays]
    cols = max(3, len(maps))
    fig, axes = plt.subplots(
        1 + len(classes), cols, figsize=(3.2 * cols, 2.6 * (1 + len(classes))), squeeze=False)
    for ax in axes.ravel():
        ax.axis('off')
    num = len(names)
    top = [('image', arrays['image'])]
    if 'gt' in arrays:
        top.append(('ground truth', colourise(arrays['gt'], num)))
    top.append(('final masks', colourise(arrays['masks'], num)))
    for ax, (label, img) in zip(axes[0], top):
        ax.imshow(img)
        ax.set_title(label, fontsize=9)
    # Colour key of the classes in the ground truth and the masks.
    from matplotlib.patches import Patch
    shown = np.unique(np.concatenate([arrays[k].ravel() for k in ('gt', 'masks') if k in arrays]))
    pal = palette_for(num)
    handles = [Patch(color=pal[c] / 255, label=names[c]) for c in shown if c < num][:12]
    if 'gt' in arrays and (arrays['gt'] >= num).any():
        handles.append(Patch(color='black', label='ignored'))
    axes[0, -1].legend(
        handles=handles, loc='upper left', bbox_to_anchor=(1.02, 1), fontsize=7, frameon=False)
    labels = dict(Lq='query logits Lq', B='bias logits B', Lr='rectified Lr = Lq - B')
    for row, c in enumerate(classes, start=1):
        planes = [arrays[k][c] for k in maps]
        vmin = min(float(p.min()) for p in planes)
        vmax = max(float(p.max()) for p in planes)
        for col, (key, plane) in enumerate(zip(maps, planes)):
            ax = axes[row, col]
            im = ax.imshow(plane, cmap='viridis', vmin=vmin, vmax=vmax, interpolation='nearest')
            ax.set_title(f'{names[c]}: {labels[key]}', fontsize=8)
        fig.colorbar(im, ax=list(axes[row, :len(maps)]), shrink=0.8)
    fig.suptitle(title, fontsize=10)
    add_banner(fig, banner)
    return save(fig, path)


def plot_bias(bias: np.ndarray, names: List[str], title: str, banner: Optional[str],
              path: str) -> str:
    """``B`` of every class on one shared colour scale."""
    num = len(names)
    cols = min(num, 8)
    rows = (num + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols + 1, 1.9 * rows + 0.6), squeeze=False)
    vmin, vmax = float(bias.min()), float(bias.max())
    for ax in axes.ravel():
        ax.axis('off')
    for c in range(num):
        ax = axes.ravel()[c]
        im = ax.imshow(bias[c], cmap='viridis', vmin=vmin, vmax=vmax, interpolation='nearest')
        ax.set_title(names[c], fontsize=7)
    fig.colorbar(im, ax=list(axes.ravel()), shrink=0.6)
    fig.suptitle(title, fontsize=10)
    add_banner(fig, banner)
    return save(fig, path)


def confused_pairs(confusion: np.ndarray, names: List[str], top: int = 10) -> List[str]:
    scores, partner = class_preference_scores(confusion)
    rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    present = [c for c in range(len(names)) if not np.isnan(scores[c])]
    present.sort(key=lambda c: -rows[c, partner[c]])
    return [f'{names[c]} -> {names[partner[c]]} ({rows[c, partner[c]]:.2f})' for c in present[:top]]


def plot_confusion(confusion: np.ndarray, names: List[str], title: str, banner: Optional[str],
                   path: str) -> str:
    rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    num = len(names)
    size = min(4 + 0.25 * num, 24)
    fig, ax = plt.subplots(figsize=(size + 3, size))
    im = ax.imshow(rows, cmap='Blues', vmin=0, vmax=1)
    if num <= 60:
        ax.set_xticks(range(num), names, rotation=90, fontsize=7)
        ax.set_yticks(range(num), names, fontsize=7)
    ax.set_xlabel('predicted class')
    ax.set_ylabel('ground-truth class')
    fig.colorbar(im, ax=ax, shrink=0.7)
    pairs = confused_pairs(confusion, names)
    fig.text(
        0.99,
        0.98,
        'most confused\n' + '\n'.join(pairs),
        ha='right',
        va='top',
        fontsize=7,
        family='monospace')
    ax.set_title(title, fontsize=10)
    fig.subplots_adjust(right=0.75, bottom=0.2)
    add_banner(fig, banner)
    return save(fig, path)


def plot_curves(scores: Dict[str, dict], banner: Optional[str], path: str) -> str:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, s in scores.items():
        curve = s['space_pref_curve']
        x = [c for c, m in zip(curve['centres'], curve['miou']) if m is not None]
        y = [m for m in curve['miou'] if m is not None]
        ax.plot(x, y, marker='o', label=f'{name} (slope {s["space_pref"]:.2f})')
    ax.set_xlabel('normalised distance of object centroid from image centre')
    ax.set_ylabel('mIoU (%)')
    ax.set_title('Space preference: mIoU vs distance (Fig. 1a)', fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    add_banner(fig, banner)
    return save(fig, path)


def write_html(out: str, scores: Dict[str, dict], figures: List[tuple],
               banner: Optional[str]) -> str:
    parts = [
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Bias report</title>'
        '<style>body{font-family:sans-serif;margin:2em}img{max-width:100%;'
        'border:1px solid #ccc}table{border-collapse:collapse}td,th{border:1px solid '
        '#999;padding:4px 8px}</style></head><body><h1>Bias report</h1>'
    ]
    if banner:
        parts.append(f'<p style="background:#c80000;color:white;padding:6px">'
                     f'<b>{html.escape(banner)}</b></p>')
    if scores:
        parts.append('<h2>Scores</h2><table><tr><th>model</th><th>mIoU (%)</th>'
                     '<th>class-preference score (higher = less bias)</th>'
                     '<th>space-preference slope (higher = less bias)</th></tr>')
        for name, s in scores.items():
            parts.append(f'<tr><td>{html.escape(name)}</td><td>{s["mIoU"]:.2f}</td>'
                         f'<td>{s["class_pref"]:.4f}</td><td>{s["space_pref"]:.4f}</td></tr>')
        parts.append('</table><p>Definitions: docs/bias.md. All numbers in '
                     '<a href="scores.json">scores.json</a>.</p><h3>Most-confused pairs '
                     '(ground truth -> prediction, share of the row)</h3><ul>')
        for name, s in scores.items():
            pairs = ', '.join(s.get('most_confused', []))
            parts.append(f'<li><b>{html.escape(name)}</b>: {html.escape(pairs)}</li>')
        parts.append('</ul>')
    section = None
    for sec, caption, path in figures:
        if sec != section:
            parts.append(f'<h2>{html.escape(sec)}</h2>')
            section = sec
        parts.append(f'<figure><img src="{html.escape(osp.basename(path))}">'
                     f'<figcaption>{html.escape(caption)}</figcaption></figure>')
    parts.append('</body></html>')
    path = osp.join(out, 'report.html')
    with open(path, 'w') as f:
        f.write('\n'.join(parts))
    return path


def main(argv=None) -> int:
    args = parse_args(argv)
    final_out = osp.abspath(args.out)
    evaluated_models = check_test_sets(args)  # before any work: fail early
    out = prepare_out(final_out, args.overwrite)
    try:
        report, figures, scores = write_report(args, out, evaluated_models)
        publish_out(out, final_out)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    report = osp.join(final_out, osp.basename(report))
    for name, s in scores.items():
        print_log(
            f'{name}: mIoU {s["mIoU"]:.2f}, class-preference {s["class_pref"]:.4f}, '
            f'space-preference slope {s["space_pref"]:.4f}',
            logger='current')
    print_log(f'Bias report: {report} ({len(figures)} figures)', logger='current')
    return 0


def write_report(args, out: str, evaluated_models: Dict[str, bool]):
    """Every figure, ``scores.json`` and ``report.html`` into ``out``.

    Returns:
        tuple: the report path, the figures, the scores.
    """
    bins = [float(b) for b in args.bins.split(',')] if args.bins else None
    scores: Dict[str, dict] = {}
    figures: List[tuple] = []
    confusions = {}
    for spec in args.models:
        name = spec['name']
        runner = build_runner(spec, args, bins, out)
        evaluated = evaluated_models[name]
        if evaluated:
            result = evaluate(runner)
            # The confusion matrix is indexed by the dataset's classes (its names).
            confusions[name] = (result.pop('confusion'), result.pop('classes'))
            scores[name] = dict(config=spec['config'], checkpoint=spec['checkpoint'], **result)
        elif spec['checkpoint']:
            runner.load_checkpoint(spec['checkpoint'], map_location='cpu')
        model = unwrap(runner.model)
        model.eval()
        names = class_names(model)
        kind = head_kind(model.decode_head)
        if kind == 'student' and not bool(model.decode_head.inherited):
            raise SystemExit(f'{spec["config"]}: a distillation student needs its distilled '
                             'checkpoint (it holds the inherited bias and decoder); pass it '
                             'after the config.')
        untrained = kind == 'reclip' and not spec['checkpoint']
        label = name + (' (untrained head: no checkpoint)' if untrained else '')

        bias = bias_map(model.decode_head, tuple(args.bias_grid))
        if bias is not None:
            bias = bias.cpu().numpy()
            path = osp.join(out, f'bias_{name}.npz')
            np.savez_compressed(path, B=bias, grid=np.array(args.bias_grid))
            figures.append(('Bias maps B (head alone)', f'{label}: bias logits B per class, '
                            f'grid {args.bias_grid[0]}x{args.bias_grid[1]}',
                            plot_bias(bias, names, f'{label}: bias logits B', args.banner,
                                      osp.join(out, f'bias_{name}.png'))))
        for item in fig4_samples(runner, args, evaluated):
            arrays = bias_arrays(model, item['data'])
            classes = choose_classes(arrays, names, args)
            stem = osp.join(out, f'fig4_{name}_{item["name"]}')
            np.savez_compressed(stem + '.npz', classes=classes, **arrays)
            figures.append(('Fig. 4: Lq, B, Lr and masks', f'{label}: {item["name"]}',
                            plot_fig4(arrays, classes, names, f'{label}: {item["name"]}',
                                      args.banner, stem + '.png')))
        if name in confusions:
            confusion, dataset_classes = confusions[name]
            figures.append(
                ('Fig. 1b: confusion matrices', f'{label}: row-normalised '
                 'confusion matrix',
                 plot_confusion(confusion, dataset_classes, f'{label}: confusion (rows: '
                                'ground truth, normalised)', args.banner,
                                osp.join(out, f'fig1b_confusion_{name}.png'))))
            scores[name]['most_confused'] = confused_pairs(confusion, dataset_classes)
        del runner, model
    if scores:
        figures.insert(
            0, ('Fig. 1a: space preference', 'mIoU vs centre distance',
                plot_curves(scores, args.banner, osp.join(out, 'fig1a_distance_curve.png'))))
        with open(osp.join(out, 'scores.json'), 'w') as f:
            json.dump(scores, f, indent=2)
    report = write_html(out, scores, figures, args.banner)
    return report, figures, scores


if __name__ == '__main__':
    run_main(main, 'tools/analysis_tools/bias_report.py')
