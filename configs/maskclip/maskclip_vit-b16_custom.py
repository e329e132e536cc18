# Training-free MaskCLIP on your own images with your own classes: no training, any
# class list at run time:
#   python tools/infer.py my_photos configs/maskclip/maskclip_vit-b16_custom.py none \
#       --classes-file my_classes.txt --out predictions
_base_ = [
    '../_base_/models/maskclip_vit-b16.py', '../_base_/datasets/custom.py',
    '../_base_/default_runtime.py'
]
model = dict(
    decode_head=dict(num_classes={{_base_.num_classes}}, class_names={{_base_.class_names}}),
    pd_threshold=None)
train_dataloader = None
val_cfg = {{_base_.custom_val_cfg}}
test_cfg = dict(type='TestLoop')
custom_hooks = [dict(type='DatasetClassCheckHook')]
