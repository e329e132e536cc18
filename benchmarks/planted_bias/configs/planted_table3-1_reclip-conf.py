# Table III row 1, "ReCLIP" (conference, rectification stage) in the planted-bias world:
# coupled bias extractor, no mask decoder, global-score hypotheses (threshold rule:
# planted_conference_parts.py). The planted twin of
# configs/reclip/ablations/table3-1_reclip-conf_vit-b16_voc.py; each next row changes
# exactly one key (tests/test_benchmarks/test_planted_configs.py).
#   PLANTED_ROOT=<world> python tools/train.py \
#       benchmarks/planted_bias/configs/planted_table3-1_reclip-conf.py
_base_ = ['./planted_reclip.py', './planted_conference_parts.py']
model = dict(
    decode_head=dict(
        bias_extractor={{_base_.conference_bias_extractor}},
        mask_decoder={{_base_.conference_mask_decoder}}))
custom_hooks = {{_base_.conference_planted_hooks}}
