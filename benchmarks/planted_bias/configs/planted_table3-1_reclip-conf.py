# Table III row 1, "ReCLIP" (conference, rectification stage) in the planted-bias world:
# coupled bias extractor, no mask decoder, global-score hypotheses (threshold rule:
# planted_conference_parts.py). The planted twin of
# configs/reclip/ablations/table3-1_reclip-conf_vit-b16_voc.py; each next row changes
# exactly one key (tests/test_benchmarks/test_planted_configs.py).
#   PLANTED_ROOT=<world> python tools/train.py \
#       benchmarks/planted_bias/configs/planted_table3-1_reclip-conf.py
_base_ = ['./planted_reclip.py', './planted_conference_parts.py']
data_root = '{{$PLANTED_ROOT:data/planted_bias}}'  # the base's, for the hook's cache
model = dict(
    decode_head=dict(
        bias_extractor={{_base_.conference_bias_extractor}},
        mask_decoder={{_base_.conference_mask_decoder}}))
custom_hooks = [
    dict(
        type='CropVoteHypothesisHook',
        mode='global',
        score_threshold={{_base_.conference_planted_hypothesis.score_threshold}},
        top_k={{_base_.conference_planted_hypothesis.top_k}},
        input_size=224,  # the toy tower's input (it is not an open_clip backbone)
        num_workers=0,
        batch_size=128,
        precision='fp32',
        cache_dir=data_root + '/hypotheses'),  # keyed by images, Q and settings: shared
    dict(type='DatasetClassCheckHook'),
]
