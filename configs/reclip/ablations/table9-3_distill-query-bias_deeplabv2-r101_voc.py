# Table IX row 3, "Query" + "Bias Logits": logits F_s·Qᵀ − B (no rectified mask generator; docs/method.md §11.8).
# One change to configs/reclip/reclip-distill_deeplabv2-r101_voc.py:
# model.decode_head.inherit.
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
        inherit=('query', 'bias')))
custom_hooks = [
    dict(
        type='CropVoteHypothesisHook',
        window={{_base_.crop_vote_window}},
        stride=None,
        min_frequency=0.0),
    dict(type='DatasetClassCheckHook'),
]
