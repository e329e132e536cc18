# ReCLIP++ stage 1 on your own images (no annotation anywhere, docs/own_data.md):
#   DATA_ROOT=my_photos CLASS_NAMES=my_classes.txt \
#       python tools/train.py configs/reclip/reclip_vit-b16_custom.py
#   python tools/infer.py my_photos configs/reclip/reclip_vit-b16_custom.py \
#       work_dirs/reclip_vit-b16_custom/iter_20000.pth --out predictions
# (or edit data_root / class_names in configs/_base_/datasets/custom.py).
_base_ = [
    '../_base_/models/reclip_vit-b16.py', '../_base_/datasets/custom.py',
    '../_base_/schedules/schedule_20k.py', '../_base_/default_runtime.py'
]
model = dict(
    decode_head=dict(num_classes={{_base_.num_classes}}, class_names={{_base_.class_names}}),
    pd_threshold={{_base_.pd_threshold}})  # dataset base: no released threshold
custom_hooks = [
    dict(
        type='CropVoteHypothesisHook',
        window={{_base_.crop_vote_window}},
        stride=None,
        min_frequency=0.0),
    dict(type='DatasetClassCheckHook'),
]
# No labelled validation folder (custom.py): no val loop.
val_cfg = {{_base_.custom_val_cfg}}
