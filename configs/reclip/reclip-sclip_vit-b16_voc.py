# ReCLIP++ stage 1 on SCLIP's dense features: the frozen CLIP's last block follows the
# training-free recipe dense_mode='sclip' (configs/training_free/sclip_vit-b16_voc.py) and
# the rectification (bias extractor + mask decoder) is learnt on top of them.
#   python tools/train.py configs/reclip/reclip-sclip_vit-b16_voc.py
_base_ = ['./reclip_vit-b16_voc.py']
model = dict(backbone=dict(dense_mode='sclip'))
