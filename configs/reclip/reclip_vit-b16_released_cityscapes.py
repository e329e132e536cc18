# ReCLIP++ rectification, released checkpoint (Cityscapes-19): evaluate the authors' weights
# with the released forward pass (configs/_base_/models/reclip_vit-b16_released.py).
# Convert, then test:
#   python tools/model_converters/reclip_released_to_mmseg.py \
#       <released cityscapes checkpoint>.pth checkpoints/reclip_vit-b16_released_cityscapes.pth \
#       --num-classes 19
#   python tools/test.py configs/reclip/reclip_vit-b16_released_cityscapes.py \
#       checkpoints/reclip_vit-b16_released_cityscapes.pth
_base_ = [
    '../_base_/models/reclip_vit-b16_released.py', '../_base_/datasets/cityscapes.py',
    '../_base_/schedules/schedule_20k.py', '../_base_/default_runtime.py'
]
model = dict(
    decode_head=dict(num_classes={{_base_.num_classes}}, class_names={{_base_.class_names}}),
    pd_threshold={{_base_.pd_threshold}})  # released threshold (docs/method.md §8): dataset base
custom_hooks = [
    # Only used if this config is trained: crop-vote window = released crop_size / 6.
    dict(
        type='CropVoteHypothesisHook',
        window={{_base_.crop_vote_window}},
        stride=None,
        min_frequency=0.0),
    dict(type='DatasetClassCheckHook'),
]
