# ReCLIP++ stage 1 on NACLIP's dense features: the frozen CLIP's last block follows the
# training-free recipe dense_mode='naclip' (configs/training_free/naclip_vit-b16_voc.py) and
# the rectification (bias extractor + mask decoder) is learnt on top of them.
#   python tools/train.py configs/reclip/reclip-naclip_vit-b16_voc.py
_base_ = ['./reclip_vit-b16_voc.py']
model = dict(backbone=dict(dense_mode='naclip'))
