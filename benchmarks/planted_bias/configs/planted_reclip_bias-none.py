# Ablation: stage 1 without the bias (Lr = Lq): the mask decoder alone.
_base_ = ['./planted_reclip.py']
model = dict(decode_head=dict(bias_mode='none'))
