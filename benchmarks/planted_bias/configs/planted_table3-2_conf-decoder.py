# Table III row 2, "+ Decoder", in the planted-bias world: row 1 with ReCLIP++'s
# rectified mask decoder (model.decode_head.mask_decoder: planted_reclip.py's, the
# ReCLIP++ default, Gumbel scale 100). Planted twin of
# configs/reclip/ablations/table3-2_conf-decoder_vit-b16_voc.py.
_base_ = ['./planted_reclip.py', './planted_conference_parts.py']
model = dict(decode_head=dict(bias_extractor={{_base_.conference_bias_extractor}}))
custom_hooks = {{_base_.conference_planted_hooks}}
