# ReCLIP++ distillation on VOC with OFFLINE mask targets: the CE term reads the stage-1
# teacher's argmax masks, written once as PNGs (pseudo labels, not ground truth); the
# teacher still runs online for the feature-guided L1 term (and the crop votes).
#   python tools/train.py configs/reclip/reclip_vit-b16_voc.py                       # stage 1
#   python tools/generate_pseudo_labels.py configs/reclip/reclip-distill_deeplabv2-r101_voc_offline.py
#   python tools/train.py configs/reclip/reclip-distill_deeplabv2-r101_voc_offline.py # stage 2
_base_ = [
    '../_base_/models/reclip-distill_deeplabv2-r101.py', '../_base_/datasets/voc20_distill.py',
    '../_base_/schedules/schedule_distill_20k.py', '../_base_/default_runtime.py'
]
pseudo_label_dir = 'work_dirs/reclip_vit-b16_voc/pseudo_labels'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadPseudoLabel', pseudo_label_dir=pseudo_label_dir),  # never the GT
    dict(
        type='RandomResize', scale={{_base_.train_scale}}, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size={{_base_.crop_size}}, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackPseudoLabelInputs'),  # packs it as pseudo_sem_seg, not gt_sem_seg
]
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))
model = dict(
    target='pseudo_label',
    teacher=dict(
        decode_head=dict(num_classes={{_base_.num_classes}}, class_names={{_base_.class_names}})),
    teacher_checkpoint='work_dirs/reclip_vit-b16_voc/iter_20000.pth',
    decode_head=dict(num_classes={{_base_.num_classes}}, class_names={{_base_.class_names}}),
    pd_threshold=None)  # no prompt denoising in distillation eval
# SGD 0.01, momentum 0.9, wd 5e-4, poly 0.9 down to 1e-4: schedule_distill_20k.py.
custom_hooks = [
    # Crop-vote hypotheses for the text-guided loss, by the teacher's CLIP; same
    # settings as stage 1 (they depend only on the image and the frozen CLIP).
    dict(
        type='CropVoteHypothesisHook',
        window={{_base_.crop_vote_window}},
        stride=None,
        min_frequency=0.0),
    dict(type='DatasetClassCheckHook'),
]
