# ReCLIP++ distillation on VOC into an mmpretrain ConvNeXt-B + mmseg FPN neck + the
# ReCLIP student head (ASPP-V2 on the stride-8 FPN level). Shows that any backbone
# (here from mmpretrain, through custom_imports) and neck can feed the student head.
#   python tools/train.py configs/reclip/reclip_vit-b16_voc.py                  # stage 1
#   python tools/train.py configs/reclip/reclip-distill_convnext-b-fpn_voc.py   # stage 2
#   python tools/test.py configs/reclip/reclip-distill_convnext-b-fpn_voc.py \
#       work_dirs/reclip-distill_convnext-b-fpn_voc/iter_20000.pth
_base_ = [
    '../_base_/models/reclip-distill_deeplabv2-r101.py', '../_base_/datasets/voc20_distill.py',
    '../_base_/schedules/schedule_distill_20k.py', '../_base_/default_runtime.py'
]
custom_imports = dict(imports=['mmseg_reclip', 'mmpretrain.models'], allow_failed_imports=False)
checkpoint_file = 'https://download.openmmlab.com/mmclassification/v0/convnext/downstream/convnext-base_3rdparty_32xb128-noema_in1k_20220301-2a0ee547.pth'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.ConvNeXt',
        arch='base',
        out_indices=[0, 1, 2, 3],
        drop_path_rate=0.4,
        layer_scale_init_value=1.0,
        gap_before_final_norm=False,  # keep the feature maps
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file, prefix='backbone.')),
    neck=dict(type='FPN', in_channels=[128, 256, 512, 1024], out_channels=256, num_outs=4),
    decode_head=dict(
        in_channels=256,
        in_index=1,  # FPN level 1: stride 8
        num_classes={{_base_.num_classes}},
        class_names={{_base_.class_names}}),
    teacher=dict(
        decode_head=dict(num_classes={{_base_.num_classes}}, class_names={{_base_.class_names}})),
    teacher_checkpoint='work_dirs/reclip_vit-b16_voc/iter_20000.pth')
custom_hooks = [
    # Crop-vote hypotheses for the text-guided loss, by the teacher's CLIP (stage 1's).
    dict(
        type='CropVoteHypothesisHook',
        window={{_base_.crop_vote_window}},
        stride=None,
        min_frequency=0.0),
    dict(type='DatasetClassCheckHook'),
]
# ConvNeXt is usually fine-tuned with AdamW (as in mmseg's ConvNeXt configs); the
# constructor still hands only trainable parameters to the optimizer.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='TrainableOptimWrapperConstructor',
    clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(
        type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end={{_base_.max_iters}}, by_epoch=False)
]
