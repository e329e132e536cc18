# Table III row 2, "+ Decoder", in the planted-bias world: row 1 with ReCLIP++'s
# rectified mask decoder (model.decode_head.mask_decoder: planted_reclip.py's, the
# ReCLIP++ default, Gumbel scale 100). Planted twin of
# configs/reclip/ablations/table3-2_conf-decoder_vit-b16_voc.py.
_base_ = ['./planted_reclip.py', './planted_conference_parts.py']
data_root = '{{$PLANTED_ROOT:data/planted_bias}}'  # the base's, for the hook's cache
model = dict(decode_head=dict(bias_extractor={{_base_.conference_bias_extractor}}))
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
