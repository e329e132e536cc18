# Table VIII row 1, mask-guided loss only (docs/method.md §11.7). The VOC distillation
# of configs/reclip/reclip-distill_deeplabv2-r101_voc.py (its bases, so inheritance stays
# three files deep) with one change: model.decode_head.loss_decode. Row 3 (all three
# terms) is that config itself.
_base_ = [
    '../../_base_/models/reclip-distill_deeplabv2-r101.py',
    '../../_base_/datasets/voc20_distill.py', '../../_base_/schedules/schedule_distill_20k.py',
    '../../_base_/default_runtime.py'
]
model = dict(
    teacher=dict(
        decode_head=dict(num_classes={{_base_.num_classes}}, class_names={{_base_.class_names}})),
    teacher_checkpoint='work_dirs/reclip_vit-b16_voc/iter_20000.pth',
    pd_threshold=None,
    decode_head=dict(
        num_classes={{_base_.num_classes}},
        class_names={{_base_.class_names}},
        loss_decode=[dict(type='MaskGuidedCELoss', loss_weight=1.0)]))
custom_hooks = [
    dict(
        type='CropVoteHypothesisHook',
        window={{_base_.crop_vote_window}},
        stride=None,
        min_frequency=0.0),
    dict(type='DatasetClassCheckHook'),
]
