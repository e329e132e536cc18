# Table III row 4, "+ Independent": row 3 with ReCLIP++'s independent bias encoding
# (model.decode_head.bias_extractor: ReferenceBiasExtractor). This is ReCLIP++ stage 1,
# the same config as configs/reclip/reclip_vit-b16_voc.py.
_base_ = ['../reclip_vit-b16_voc.py']
