# Table III row 2, "+ Decoder": row 1 with ReCLIP++'s rectified mask decoder
# (model.decode_head.mask_decoder: the ReCLIP++ default, Gumbel scale 100).
_base_ = ['../reclip_vit-b16_voc.py', '../../_base_/models/reclip-conference_parts.py']
model = dict(decode_head=dict(bias_extractor={{_base_.conference_bias_extractor}}))
custom_hooks = [
    dict(
        type='CropVoteHypothesisHook',
        mode='global',
        score_threshold={{_base_.conference_hypothesis.voc20.score_threshold}},
        top_k={{_base_.conference_hypothesis.voc20.top_k}}),
    dict(type='DatasetClassCheckHook'),
]
