# ReCLIP++ stage 1 in the planted-bias world (docs/learning_check.md): the project's
# ReCLIP segmentor, head, bias extractor, mask decoder, loss and crop-vote hook with
# their released defaults; the image tower is the toy PlantedBiasCLIP. Generate the
# world first, then run mmseg's own tools:
#   python -m benchmarks.planted_bias.generate --out data/planted_bias
#   python tools/train.py benchmarks/planted_bias/configs/planted_reclip.py
# World folder: PLANTED_ROOT (default data/planted_bias).
_base_ = ['../../../configs/_base_/default_runtime.py']
custom_imports = dict(
    imports=['mmseg_reclip', 'benchmarks.planted_bias'], allow_failed_imports=False)

data_root = '{{$PLANTED_ROOT:data/planted_bias}}'
class_names = data_root + '/classes.txt'
clip_file = data_root + '/clip.pt'
templates = 'reclip85'

# The toy tower reads RGB in 0-255: no normalisation (the crop votes use the same).
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[0.0, 0.0, 0.0],
    std=[1.0, 1.0, 1.0],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size_divisor=16)
model = dict(
    type='ReCLIP',
    data_preprocessor=data_preprocessor,
    clip=dict(model_name='ViT-Tiny-16-test', pretrained=clip_file),
    backbone=dict(
        type='PlantedBiasCLIP', world_file=data_root + '/world.json', templates=templates),
    decode_head=dict(
        type='ReCLIPHead',
        in_channels=64,
        class_names=class_names,
        templates=templates,
        query_cache_dir=None,
        show_progress=False,
        text_encoder=dict(type='OpenCLIPTextEncoder'),
        # released defaults (configs/_base_/models/reclip_vit-b16.py)
        bias_extractor=dict(
            type='ReferenceBiasExtractor',
            num_context=73,
            ctx_init='token0',
            ref_norm='global',
            name_token_mode='eot'),
        bias_mode='subtract',
        mask_decoder=dict(
            type='RectifiedMaskDecoder', kernel_size=5, gumbel_scale=100.0, gumbel_tau=1.0),
        norm_cfg=dict(type='BN', requires_grad=True),  # one CPU process
        loss_decode=dict(type='ReCLIPContrastiveLoss', logit_scale=100.0, loss_weight=1.0)),
    pd_threshold=None,
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

# Images only for training (no label folder is written for train); the network input
# is the whole 224 x 224 image, so "absolute position" is the image position.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='StepSeededSampler', sampler=dict(type='InfiniteSampler', shuffle=True)),
    dataset=dict(
        type='StepSeededDataset',
        dataset=dict(
            type='UnlabeledImageDataset',
            data_root=data_root,
            data_prefix=dict(img_path='img_dir/train'),
            class_names=class_names,
            pipeline=train_pipeline)))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='LabelledImageFolderDataset',
        data_root=data_root,
        class_names=class_names,
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        img_suffix='.png',
        seg_map_suffix='.png',
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='IoUMetric', iou_metrics=['mIoU']),
    dict(type='ClassPreferenceMetric'),
    dict(type='SpacePreferenceMetric'),
]
test_evaluator = val_evaluator

custom_hooks = [
    # window = 224 / 4 (7 x 7 crops per image); released rule: any vote counts
    dict(
        type='CropVoteHypothesisHook',
        window=56,
        stride=None,
        min_frequency=0.0,
        input_size=224,  # the toy tower's crop input (it is not an open_clip backbone)
        num_workers=0,
        batch_size=128,
        precision='fp32',
        cache_dir=data_root + '/hypotheses'),  # keyed by images, Q and settings: shared
    dict(type='DatasetClassCheckHook'),
]

# The toy's schedule (the released optimiser, fewer iterations); evaluated once, at the end.
max_iters = 1000
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4),
    constructor='TrainableOptimWrapperConstructor',
    clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=max_iters, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1),
    visualization=dict(type='SegVisualizationHook', draw=False))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
