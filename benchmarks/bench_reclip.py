#!/usr/bin/env python
"""ReCLIP++ speed as ratios to its floor, measured side by side in one run.

For a stage-1 config (random ViT-B-16 weights unless ``--pretrained``), at the config's
training batch size and crop and at batch 1, in fp32 and under autocast (``--amp-dtype``,
bf16 by default; fp16 uses a loss scaler on GPUs):

- ``frozen_forward``: the frozen CLIP image path alone (dense features, no grad);
- ``reference_fwd_bwd``: the Reference-prompt encoding, forward and backward into the
  context vectors (``R`` for all C classes);
- ``train_step``: a full stage-1 step (loss, backward, SGD step), and the ratios
  ``step / (frozen + reference)`` and ``step / frozen``;

once per precision:

- ``inference``: ReCLIP ``encode_decode`` (bias cached) vs the MaskCLIP config's on the
  same image size, and the ratio;
- ``crop_vote``: the hook's pre-pass (JPEG files read and cut by DataLoader workers,
  batched, scored) in crops/s vs ``encode_image`` alone on the same number of prepared
  crops, and the ratio;
- ``reference_encoding``: released-style naive (C prompts × 77 tokens) vs ours,
  forward+backward, and the ratio (``--no-naive`` skips the slow naive one on CPUs).

Peak GPU memory is recorded per measurement. Prints a table and writes JSON.

    python benchmarks/bench_reclip.py --config configs/reclip/reclip_vit-b16_voc.py \
        --json voc.json
"""
import argparse
import json
import os
import os.path as osp
import sys
import tempfile
import time
from contextlib import nullcontext

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import mmseg_reclip  # noqa: E402,F401  # isort: skip
from mmseg.registry import MODELS  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

from mmseg_reclip.crop_vote.hook import CropVoteHypothesisHook  # noqa: E402


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def measure_together(fns, repeats, device):
    """Seconds per call of several functions measured side by side.

    After one warm-up call each, every round times each function once (synchronised),
    so that a change of machine load hits all of them alike and their ratios stay
    meaningful on a shared machine. ``s`` is the fastest round (other processes only
    ever add time), ``mean_s`` the mean; ratios use ``s``. Peak GPU memory (GiB) is
    per function.
    """
    times = {name: [] for name in fns}
    peaks = {name: 0.0 for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    sync(device)
    for _ in range(repeats):
        for name, fn in fns.items():
            if device.type == 'cuda':
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
            if device.type == 'cuda':
                peaks[name] = max(peaks[name], torch.cuda.max_memory_allocated() / 2**30)
    return {
        name:
        dict(
            s=round(min(t), 5),
            mean_s=round(sum(t) / len(t), 5),
            peak_gib=round(peaks[name], 3) if device.type == 'cuda' else None)
        for name, t in times.items()
    }


def ratio(a, b):
    return round(a['s'] / b['s'], 3)


def build(cfg_path, args, device):
    cfg = Config.fromfile(cfg_path)
    model_cfg = cfg.model
    # the one CLIP switch: every size follows from it (clip_dims)
    model_cfg.clip = dict(model_cfg.get('clip') or {}, pretrained=args.pretrained)
    if args.clip_model:
        model_cfg.clip['model_name'] = args.clip_model
    if args.dense_mode:
        model_cfg.backbone.dense_mode = args.dense_mode
    if 'norm_cfg' in model_cfg.decode_head:
        model_cfg.decode_head.norm_cfg = dict(type='BN')  # SyncBN needs a process group
    model_cfg.decode_head.query_cache_dir = None
    model_cfg.decode_head.show_progress = False
    if args.compile_mode and model_cfg.type == 'ReCLIP':
        model_cfg.decode_head.text_encoder.compile_mode = args.compile_mode
    model = MODELS.build(model_cfg).to(device)
    model.decode_head.queries()
    return cfg, model


def write_vote_images(folder, n, size, seed=0):
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        # smooth random colour fields: JPEG-decodable like a photo, not pure noise
        small = rng.integers(0, 256, (size[0] // 16, size[1] // 16, 3), dtype=np.uint8)
        img = cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
        path = osp.join(folder, f'img_{i:04d}.jpg')
        cv2.imwrite(path, img)
        paths.append(path)
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default='configs/reclip/reclip_vit-b16_voc.py')
    parser.add_argument(
        '--maskclip-config',
        default=None,
        help='default: configs/maskclip/maskclip_vit-b16_<dataset>.py')
    parser.add_argument('--pretrained', default=None, help='CLIP weights (default: random)')
    parser.add_argument(
        '--clip-model', '--model', default=None, help='open_clip model (model.clip.model_name)')
    parser.add_argument(
        '--dense-mode',
        default=None,
        choices=['maskclip', 'sclip', 'clearclip', 'naclip'],
        help="the backbone's dense-feature recipe (default: the config's)")
    parser.add_argument(
        '--batches',
        '--batch',
        type=int,
        nargs='+',
        default=None,
        help="default: the config's train batch size, and 1")
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--precisions', nargs='+', default=['fp32', 'amp'], choices=['fp32', 'amp'])
    parser.add_argument('--amp-dtype', default='bf16', choices=['bf16', 'fp16'])
    parser.add_argument(
        '--test-size',
        type=int,
        nargs=2,
        default=None,
        help='inference image size (default: test short side x 4/3)')
    parser.add_argument(
        '--vote-images',
        type=int,
        default=4,
        help='JPEG images (500x375) the crop-vote pre-pass reads')
    parser.add_argument(
        '--vote-window',
        type=int,
        default=None,
        help="default: the config's CropVoteHypothesisHook window")
    parser.add_argument('--vote-batch', type=int, default=256)
    parser.add_argument('--vote-workers', type=int, default=2)
    parser.add_argument(
        '--no-naive',
        action='store_true',
        help='skip the naive Reference encoding (30 s per step on a CPU)')
    parser.add_argument(
        '--skip', nargs='*', default=[], choices=['step', 'inference', 'vote', 'reference'])
    parser.add_argument(
        '--compile-mode',
        default=None,
        help="torch.compile the Reference encoding (e.g. 'reduce-overhead')")
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--json')
    args = parser.parse_args()
    init_default_scope('mmseg')
    device = torch.device(args.device)
    amp_dtype = torch.bfloat16 if args.amp_dtype == 'bf16' else torch.float16
    if device.type == 'cpu' and amp_dtype == torch.float16:
        parser.error('fp16 autocast needs a GPU; use --amp-dtype bf16 on CPU')

    def autocast(precision):
        if precision == 'fp32':
            return nullcontext()
        return torch.autocast(device.type, dtype=amp_dtype)

    cfg, model = build(args.config, args, device)
    head = model.decode_head
    num_classes = head.num_classes
    crop = tuple(cfg.crop_size)
    batches = args.batches or sorted({int(cfg.train_dataloader.batch_size), 1}, reverse=True)
    result = dict(
        config=args.config,
        command=' '.join([osp.basename(sys.argv[0])] + sys.argv[1:]),
        device=torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu',
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        load_avg=os.getloadavg() if hasattr(os, 'getloadavg') else None,
        classes=num_classes,
        crop=crop,
        amp_dtype=args.amp_dtype,
        repeats=args.repeats,
        compile_mode=args.compile_mode,
        step={},
        inference={},
        crop_vote={},
        reference_encoding={})
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.SGD(params, lr=0.01, momentum=0.9)

    # ------------------------------------------------------------- frozen / reference / step
    if 'step' not in args.skip:
        for batch in batches:
            inputs = torch.randn(batch, 3, *crop, device=device)
            samples = [
                SegDataSample(metainfo=dict(hypothesis=list(range(i % 3, num_classes, 7))))
                for i in range(batch)
            ]
            for precision in args.precisions:
                scaler = torch.amp.GradScaler(
                    device.type, enabled=(precision == 'amp' and amp_dtype == torch.float16))

                def frozen():
                    with torch.no_grad(), autocast(precision):
                        model.extract_feat(inputs)

                def reference():
                    with autocast(precision):
                        ref = head.bias_extractor.reference_embeddings()
                    head.bias_extractor.context.grad = None
                    ref.float().square().sum().backward()

                def step():
                    with autocast(precision):
                        losses = model.loss(inputs, samples)
                    loss = sum(v for k, v in losses.items() if 'loss' in k)
                    optim.zero_grad()
                    scaler.scale(loss).backward()
                    scaler.step(optim)
                    scaler.update()

                model.train()
                row = measure_together(
                    dict(frozen_forward=frozen, reference_fwd_bwd=reference, train_step=step),
                    args.repeats, device)
                floor = dict(s=row['frozen_forward']['s'] + row['reference_fwd_bwd']['s'])
                row['step_over_frozen_plus_reference'] = ratio(row['train_step'], floor)
                row['step_over_frozen'] = ratio(row['train_step'], row['frozen_forward'])
                row['images_per_s'] = round(batch / row['train_step']['s'], 2)
                result['step'][f'batch{batch}_{precision}'] = row
                print(f'[step] batch {batch} {precision}: {json.dumps(row)}', flush=True)
        for batch in batches:
            fp, amp = (result['step'].get(f'batch{batch}_{p}') for p in ('fp32', 'amp'))
            if fp and amp:
                result['step'][f'batch{batch}_fp32_over_amp'] = ratio(fp['train_step'],
                                                                      amp['train_step'])

    # ------------------------------------------------------------- inference vs MaskCLIP
    model.eval()
    if 'inference' not in args.skip:
        mc_path = args.maskclip_config or args.config.replace('reclip/reclip_vit-b16_',
                                                              'maskclip/maskclip_vit-b16_')
        _, maskclip = build(mc_path, args, device)
        maskclip.eval()
        short = cfg.test_pipeline[1]['scale'][1]
        size = tuple(args.test_size) if args.test_size else (short, short * 4 // 3 // 16 * 16)
        img = torch.randn(1, 3, *size, device=device)
        metas = [dict(img_shape=size, ori_shape=size, pad_shape=size)]
        result['inference']['size'] = size
        result['inference']['maskclip_config'] = mc_path
        for precision in args.precisions:

            def infer(m):

                def run():
                    with torch.no_grad(), autocast(precision):
                        m.encode_decode(img, metas)

                return run

            row = measure_together(
                dict(reclip=infer(model), maskclip=infer(maskclip)), args.repeats, device)
            row['reclip_over_maskclip'] = ratio(row['reclip'], row['maskclip'])
            result['inference'][precision] = row
            print(f'[inference] {precision}: {json.dumps(row)}', flush=True)
        del maskclip

    # ------------------------------------------------------------- crop voting
    if 'vote' not in args.skip:
        hook_cfg = [
            h for h in cfg.get('custom_hooks', []) if h.get('type') == 'CropVoteHypothesisHook'
        ]
        window = args.vote_window or (hook_cfg[0].get('window', 56) if hook_cfg else 56)
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_vote_images(tmp, args.vote_images, (375, 500))
            for precision in args.precisions:
                hook = CropVoteHypothesisHook(
                    window=window,
                    batch_size=args.vote_batch,
                    num_workers=args.vote_workers,
                    precision='fp32' if precision == 'fp32' else args.amp_dtype)
                hook.cast_dtype = None if precision == 'fp32' else amp_dtype
                count = {}

                def vote():
                    n = 0
                    with torch.no_grad():
                        for crops, _ in hook._iter_batches(model, paths):
                            hook._scores(model, crops)
                            n += crops.shape[0]
                    count['crops'] = n

                vote()
                n_crops = count['crops']
                prepared = torch.randn(
                    min(args.vote_batch, n_crops),
                    3,
                    hook.input_size,
                    hook.input_size,
                    device=device)
                full, rest = divmod(n_crops, prepared.shape[0])

                def encode_only():
                    with torch.no_grad(), autocast(precision):
                        for _ in range(full):
                            model.backbone.encode_image(prepared)
                        if rest:
                            model.backbone.encode_image(prepared[:rest])

                reps = max(1, args.repeats // 2)
                row = dict(
                    crops=n_crops,
                    images=len(paths),
                    window=window,
                    workers=args.vote_workers,
                    batch=args.vote_batch,
                    **measure_together(dict(pipeline=vote, encode_image=encode_only), reps, device))
                row['pipeline_crops_per_s'] = round(n_crops / row['pipeline']['s'], 1)
                row['encode_image_crops_per_s'] = round(n_crops / row['encode_image']['s'], 1)
                row['pipeline_over_encode_image_throughput'] = round(
                    row['pipeline_crops_per_s'] / row['encode_image_crops_per_s'], 3)
                result['crop_vote'][precision] = row
                print(f'[crop vote] {precision}: {json.dumps(row)}', flush=True)

    # ------------------------------------------------------------- Reference: naive vs ours
    if 'reference' not in args.skip:
        enc = head.text_encoder
        ctx = head.bias_extractor.context.detach().clone().requires_grad_(True)

        def ref_step(fn, precision):

            def run():
                ctx.grad = None
                with autocast(precision):
                    out = fn(ctx, head.bias_extractor.ref_tokens, head.bias_extractor.ref_eot)
                out.float().sum().backward()

            return run

        with torch.no_grad():
            tokens, eot = head.bias_extractor.ref_tokens, head.bias_extractor.ref_eot
            diff = (enc.encode_context_prompts(ctx, tokens, eot) -
                    enc.encode_context_prompts_naive(ctx, tokens, eot)).abs().max().item()
        result['reference_encoding']['max_abs_diff_fp32'] = diff
        result['reference_encoding']['context'] = int(ctx.shape[0])
        for precision in args.precisions:
            fns = dict(ours=ref_step(enc.encode_context_prompts, precision))
            if not args.no_naive:
                fns['naive'] = ref_step(enc.encode_context_prompts_naive, precision)
            row = measure_together(fns, args.repeats, device)
            if not args.no_naive:
                row['naive_over_ours'] = ratio(row['naive'], row['ours'])
            result['reference_encoding'][precision] = row
            print(f'[reference] {precision}: {json.dumps(row)}', flush=True)

    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)


if __name__ == '__main__':
    main()
