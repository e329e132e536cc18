# ReCLIP++ stage 2 (distillation into DeepLab V2 ResNet-101) on VOC, docs/method.md §7/§8.
# Two stages:
#   python tools/train.py configs/reclip/reclip_vit-b16_voc.py                 # stage 1 (teacher)
#   python tools/train.py configs/reclip/reclip-distill_deeplabv2-r101_voc.py  # stage 2
#   python tools/test.py configs/reclip/reclip-distill_deeplabv2-r101_voc.py \
#       work_dirs/reclip-distill_deeplabv2-r101_voc/iter_20000.pth             # no CLIP needed
# Another teacher: --cfg-options model.teacher_checkpoint=PATH.
# VOC distillation crop 512 (stage 1: 336): configs/_base_/datasets/voc20_distill.py.
_base_ = [
    '../_base_/models/reclip-distill_deeplabv2-r101.py', '../_base_/datasets/voc20_distill.py',
    '../_base_/schedules/schedule_distill_20k.py', '../_base_/default_runtime.py'
]

model = dict(
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
