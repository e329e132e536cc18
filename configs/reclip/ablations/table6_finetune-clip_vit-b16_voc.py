# Table VI, "Fine-tune CLIP": CLIP's image encoder is trained with the ReCLIP++ parts
# (docs/method.md §11.6; the paper reports a collapse to ~1 mIoU). The optimizer gets the
# image encoder's parameters in addition to the usual trainables (requires_grad decides,
# TrainableOptimWrapperConstructor). The paper gives no learning rate for the encoder:
# the same SGD lr 0.01 as everything else (lr_mult 1). The encoder's weights are saved
# in the checkpoints (they change); the text tower and Q stay frozen.
_base_ = ['../reclip_vit-b16_voc.py']
model = dict(backbone=dict(type='TrainableCLIPViTBackbone'))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone.visual': dict(lr_mult=1.0)}))
