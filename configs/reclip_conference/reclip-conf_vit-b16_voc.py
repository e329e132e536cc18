# Conference ReCLIP (CVPR 2024), stage 1 (rectification) on VOC, docs/method.md §11:
# coupled bias (F·Rᵀ + projected PE, subtracted), no mask decoder, global-score
# hypotheses. Everything else is the ReCLIP++ stage-1 config.
#   python tools/train.py configs/reclip_conference/reclip-conf_vit-b16_voc.py
#   python tools/test.py configs/reclip_conference/reclip-conf_vit-b16_voc.py \
#       work_dirs/reclip-conf_vit-b16_voc/iter_20000.pth
_base_ = ['../reclip/reclip_vit-b16_voc.py', '../_base_/models/reclip-conference_parts.py']
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
