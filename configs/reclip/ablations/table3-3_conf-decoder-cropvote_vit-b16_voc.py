# Table III row 3, "+ Label Hypothesis": row 2 with ReCLIP++'s crop-vote hypotheses
# (custom_hooks: the ReCLIP++ default).
_base_ = ['../reclip_vit-b16_voc.py', '../../_base_/models/reclip-conference_parts.py']
model = dict(decode_head=dict(bias_extractor={{_base_.conference_bias_extractor}}))
