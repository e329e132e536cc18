#!/usr/bin/env python
"""Time ReCLIP++ at real size: a stage-1 training step, inference with and without the
per-grid bias cache, and crop-vote throughput (random ViT-B-16 weights unless given).

    python benchmarks/bench_reclip.py --config configs/reclip/reclip_vit-b16_voc.py \
        --batch 8 --json out.json
"""
import argparse
import json
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import mmseg_reclip  # noqa: E402,F401
from mmseg.registry import MODELS  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def timed(fn, repeats, device):
    fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--config', default='configs/reclip/reclip_vit-b16_voc.py')
    parser.add_argument('--pretrained', default=None, help='CLIP weights (default: random)')
    parser.add_argument('--clip-model', default=None, help='override the open_clip model')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--test-size', type=int, nargs=2, default=None,
                        help='inference image size (default: test short side x 4/3)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--json')
    args = parser.parse_args()
    init_default_scope('mmseg')
    device = torch.device(args.device)
    cfg = Config.fromfile(args.config)
    cfg.model.backbone.pretrained = args.pretrained
    cfg.model.decode_head.text_encoder.pretrained = args.pretrained
    if args.clip_model:
        cfg.model.backbone.model_name = args.clip_model
        cfg.model.decode_head.text_encoder.model_name = args.clip_model
        cfg.model.decode_head.in_channels = MODELS.build(
            cfg.model.decode_head.text_encoder).embed_dim
    cfg.model.decode_head.norm_cfg = dict(type='BN')
    cfg.model.decode_head.query_cache_dir = None
    cfg.model.decode_head.show_progress = False
    model = MODELS.build(cfg.model).to(device)
    head = model.decode_head
    t0 = time.perf_counter()
    head.queries()
    sync(device)
    query_s = time.perf_counter() - t0
    num_classes = head.num_classes
    crop = tuple(cfg.crop_size)
    optim = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01,
                            momentum=0.9)
    inputs = torch.randn(args.batch, 3, *crop, device=device)
    samples = [SegDataSample(metainfo=dict(hypothesis=list(range(i % 3, num_classes, 7))))
               for i in range(args.batch)]

    def train_step():
        losses = model.loss(inputs, samples)
        loss = sum(v for k, v in losses.items() if 'loss' in k)
        optim.zero_grad()
        loss.backward()
        optim.step()

    model.train()
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    step_s = timed(train_step, args.repeats, device)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == 'cuda' else None

    model.eval()
    short = cfg.test_pipeline[1]['scale'][1]
    size = tuple(args.test_size) if args.test_size else (short, short * 4 // 3 // 16 * 16)
    img = torch.randn(1, 3, *size, device=device)
    metas = [dict(img_shape=size, ori_shape=size, pad_shape=size)]

    def infer():
        with torch.no_grad():
            model.encode_decode(img, metas)

    def infer_nocache():
        head._bias_cache.clear()
        infer()

    cached_s = timed(infer, args.repeats, device)
    nocache_s = timed(infer_nocache, args.repeats, device)
    crops = torch.randn(256, 3, 224, 224, device=device)
    vote_s = timed(lambda: model.global_class_scores(crops), 3, device)
    result = dict(
        config=args.config, device=torch.cuda.get_device_name() if device.type == 'cuda'
        else 'cpu', classes=num_classes, batch=args.batch, crop=crop,
        query_build_s=round(query_s, 3), train_step_s=round(step_s, 4),
        train_images_per_s=round(args.batch / step_s, 1), peak_mem_gib=peak and round(peak, 2),
        infer_size=size, infer_cached_bias_s=round(cached_s, 4),
        infer_uncached_bias_s=round(nocache_s, 4),
        crop_vote_crops_per_s=round(256 / vote_s, 1))
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)


if __name__ == '__main__':
    main()
