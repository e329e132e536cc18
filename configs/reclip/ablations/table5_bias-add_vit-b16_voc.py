# Table V, "Addition": Lr = Lq + B instead of Lq − B (docs/method.md §11.5).
_base_ = ['../reclip_vit-b16_voc.py']
model = dict(decode_head=dict(bias_mode='add'))
