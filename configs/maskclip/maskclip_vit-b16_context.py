# Training-free MaskCLIP baseline: python tools/test.py configs/maskclip/maskclip_vit-b16_context.py
_base_ = [
    '../_base_/models/maskclip_vit-b16.py', '../_base_/datasets/context59.py',
    '../_base_/default_runtime.py'
]
model = dict(
    decode_head=dict(num_classes={{_base_.num_classes}}, class_names={{_base_.class_names}}),
    # Prompt denoising (docs/method.md §8) is off for the baseline; e.g. --cfg-options
    # model.pd_threshold=0.5 turns it on.
    pd_threshold=None)
# Training-free: nothing to train, so no train loop.
train_dataloader = None
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
custom_hooks = [dict(type='DatasetClassCheckHook')]
