# Table VI, "Fine-tune CLIP": CLIP's image encoder is trained with the ReCLIP++ parts
# (docs/method.md §11.6; the paper reports a collapse to ~1 mIoU). The optimizer gets the
# image encoder's parameters in addition to the usual trainables (requires_grad decides,
# TrainableOptimWrapperConstructor). The paper gives no learning rate for the encoder:
# the same SGD lr 0.01 (momentum 0.9, wd 5e-4, poly) as everything else; set e.g.
#   --cfg-options "optim_wrapper.paramwise_cfg.custom_keys={'backbone.visual':{'lr_mult':0.1}}"
# for another. The encoder's weights are saved in the checkpoints (they change); the
# text tower and Q stay frozen.
_base_ = ['../reclip_vit-b16_voc.py']
model = dict(backbone=dict(type='TrainableCLIPViTBackbone'))
