# Table III row 3, "+ Label Hypothesis", in the planted-bias world: row 2 with
# ReCLIP++'s crop-vote hypotheses (custom_hooks: planted_reclip.py's). Planted twin of
# configs/reclip/ablations/table3-3_conf-decoder-cropvote_vit-b16_voc.py. Row 4
# ("+ Independent", ReCLIP++ stage 1) is planted_reclip.py itself.
_base_ = ['./planted_reclip.py', './planted_conference_parts.py']
model = dict(decode_head=dict(bias_extractor={{_base_.conference_bias_extractor}}))
