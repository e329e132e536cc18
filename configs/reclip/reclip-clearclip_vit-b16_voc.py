# ReCLIP++ stage 1 on ClearCLIP's dense features: the frozen CLIP's last block follows the
# training-free recipe dense_mode='clearclip' (configs/training_free/clearclip_vit-b16_voc.py) and
# the rectification (bias extractor + mask decoder) is learnt on top of them.
#   python tools/train.py configs/reclip/reclip-clearclip_vit-b16_voc.py
_base_ = ['./reclip_vit-b16_voc.py']
model = dict(backbone=dict(dense_mode='clearclip'))
