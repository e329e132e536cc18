# Linear probing (paper Table I protocol; docs/method.md §11.9) of the stage-1 rectified
# CLIP on VOC: its pixel embeddings (CLIP's dense F, frozen: rectification changes what
# classifies F, not F) + a 1x1 classifier trained WITH the ground-truth labels. An
# evaluation protocol, not the method (see README.md here).
#   python tools/train.py configs/linear_probe/lp_reclip_vit-b16_voc.py \
#       --cfg-options model.checkpoint=work_dirs/reclip_vit-b16_voc/iter_20000.pth
_base_ = ['../reclip/reclip_vit-b16_voc.py']
model = dict(
    type='LinearProbeSegmentor',
    trained_type='ReCLIP',
    checkpoint='work_dirs/reclip_vit-b16_voc/iter_20000.pth',
    probe_head=dict(
        type='LinearProbeHead',  # in_channels: the trained model's embedding width
        num_classes={{_base_.num_classes}},
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
# Labels are read here, and only here (the protocol's supervision).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize', scale={{_base_.train_scale}}, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size={{_base_.crop_size}}, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))
custom_hooks = [dict(type='DatasetClassCheckHook')]  # no hypotheses: the labels train
