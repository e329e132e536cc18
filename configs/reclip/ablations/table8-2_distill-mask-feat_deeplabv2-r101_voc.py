# Table VIII row 2, mask-guided + feature-guided loss (docs/method.md §11.7); one change
# to configs/reclip/reclip-distill_deeplabv2-r101_voc.py: model.decode_head.loss_decode.
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
