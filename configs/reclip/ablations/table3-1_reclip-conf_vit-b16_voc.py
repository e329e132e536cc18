# Table III row 1, "ReCLIP" (conference, rectification stage): coupled bias, no decoder,
# global-score hypotheses. The same model as configs/reclip_conference/reclip-conf_vit-b16_voc.py;
# each next row changes exactly one key (tests/test_configs/test_ablation_configs.py).
_base_ = ['../reclip_vit-b16_voc.py', '../../_base_/models/reclip-conference_parts.py']
model = dict(
    decode_head=dict(
        bias_extractor={{_base_.conference_bias_extractor}},
        mask_decoder={{_base_.conference_mask_decoder}}))
custom_hooks = [
    dict(
        type='CropVoteHypothesisHook',
        mode='global',
        score_threshold={{_base_.conference_hypothesis.voc20.score_threshold}},
        top_k={{_base_.conference_hypothesis.voc20.top_k}}),
    dict(type='DatasetClassCheckHook'),
]
