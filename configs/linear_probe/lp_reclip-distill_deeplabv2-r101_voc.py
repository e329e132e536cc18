# Linear probing (paper Table I, "ReCLIP++ (LP)"; docs/method.md §11.9) of the distilled
# VOC student: its pixel embeddings F_s (frozen) + a 1x1 classifier trained WITH the
# ground-truth labels. An evaluation protocol, not the method (see README.md here).
#   python tools/train.py configs/linear_probe/lp_reclip-distill_deeplabv2-r101_voc.py \
#       --cfg-options model.checkpoint=work_dirs/reclip-distill_deeplabv2-r101_voc/iter_20000.pth
# The bases of configs/reclip/reclip-distill_deeplabv2-r101_voc.py (inheritance stays
# three files deep) with its VOC values.
_base_ = [
    '../_base_/models/reclip-distill_deeplabv2-r101.py', '../_base_/datasets/voc20_distill.py',
    '../_base_/schedules/schedule_distill_20k.py', '../_base_/default_runtime.py'
]
model = dict(
    teacher=dict(
        decode_head=dict(num_classes={{_base_.num_classes}}, class_names={{_base_.class_names}})),
    decode_head=dict(num_classes={{_base_.num_classes}}, class_names={{_base_.class_names}}),
    pd_threshold=None,
    type='LinearProbeSegmentor',
    trained_type='ReCLIPDistiller',
    checkpoint='work_dirs/reclip-distill_deeplabv2-r101_voc/iter_20000.pth',
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
