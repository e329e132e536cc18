# ReCLIP++ stage 2 on your own images: distil the stage-1 model of
# reclip_vit-b16_custom.py into DeepLab V2 ResNet-101 (docs/own_data.md):
#   DATA_ROOT=my_photos CLASS_NAMES=my_classes.txt \
#       python tools/train.py configs/reclip/reclip-distill_deeplabv2-r101_custom.py \
#       --cfg-options model.teacher_checkpoint=work_dirs/reclip_vit-b16_custom/iter_20000.pth
#   python tools/infer.py my_photos configs/reclip/reclip-distill_deeplabv2-r101_custom.py \
#       work_dirs/reclip-distill_deeplabv2-r101_custom/iter_20000.pth --out predictions
_base_ = [
    '../_base_/models/reclip-distill_deeplabv2-r101.py', '../_base_/datasets/custom.py',
    '../_base_/schedules/schedule_distill_20k.py', '../_base_/default_runtime.py'
]
model = dict(
    teacher=dict(
        decode_head=dict(num_classes={{_base_.num_classes}}, class_names={{_base_.class_names}})),
    teacher_checkpoint='work_dirs/reclip_vit-b16_custom/iter_20000.pth',
    decode_head=dict(num_classes={{_base_.num_classes}}, class_names={{_base_.class_names}}),
    pd_threshold={{_base_.pd_threshold}})
custom_hooks = [
    dict(
        type='CropVoteHypothesisHook',
        window={{_base_.crop_vote_window}},
        stride=None,
        min_frequency=0.0),
    dict(type='DatasetClassCheckHook'),
]
val_cfg = {{_base_.custom_val_cfg}}
