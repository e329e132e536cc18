# Table IX row 1, "Ori. Head": the student learns its own 1x1 classifier on F_s from the
# teacher's masks and inherits nothing for classification (docs/method.md §11.8). The
# text-guided loss needs the inherited Q, so it is left out: mask-guided CE (the
# teacher's masks) + feature-guided L1 (the teacher's features). Rows 2-3 change only
# model.decode_head.inherit; row 4 (Query + bias + RMG) is
# configs/reclip/reclip-distill_deeplabv2-r101_voc.py.
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
        inherit=(),
        loss_decode=[
            dict(type='MaskGuidedCELoss', loss_weight=1.0),
            dict(type='FeatureGuidedL1Loss', loss_weight={{_base_.lambda_feat}}),
        ]))
custom_hooks = [
    dict(
        type='CropVoteHypothesisHook',
        window={{_base_.crop_vote_window}},
        stride=None,
        min_frequency=0.0),
    dict(type='DatasetClassCheckHook'),
]
