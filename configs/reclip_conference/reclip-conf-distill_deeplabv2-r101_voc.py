# Conference ReCLIP (CVPR 2024), stage 2 on VOC (docs/method.md §11.1-§11.3): the ReCLIP++
# distillation recipe with the conference teacher. The student inherits, frozen, Q, the
# coupled bias extractor (R and the PE projection: its class bias is F_s·Rᵀ on its own
# features) and no mask decoder; hypotheses of the text-guided loss by global score.
#   python tools/train.py configs/reclip_conference/reclip-conf_vit-b16_voc.py
#   python tools/train.py configs/reclip_conference/reclip-conf-distill_deeplabv2-r101_voc.py
_base_ = [
    '../_base_/models/reclip-distill_deeplabv2-r101.py', '../_base_/datasets/voc20_distill.py',
    '../_base_/schedules/schedule_distill_20k.py', '../_base_/default_runtime.py',
    '../_base_/models/reclip-conference_parts.py'
]
model = dict(
    teacher=dict(
        decode_head=dict(
            num_classes={{_base_.num_classes}},
            class_names={{_base_.class_names}},
            bias_extractor={{_base_.conference_bias_extractor}},
            # (written out: a {{_base_.*}} dict with _delete_ is used once per config)
            mask_decoder=dict(
                _delete_=True, type='NoMaskDecoder', gumbel_scale=1000.0, gumbel_tau=1.0))),
    teacher_checkpoint='work_dirs/reclip-conf_vit-b16_voc/iter_20000.pth',
    decode_head=dict(
        num_classes={{_base_.num_classes}},
        class_names={{_base_.class_names}},
        bias_extractor={{_base_.conference_bias_extractor}},
        mask_decoder=dict(_delete_=True, type='NoMaskDecoder', gumbel_scale=1000.0,
                          gumbel_tau=1.0)),
    pd_threshold=None)
custom_hooks = [
    dict(
        type='CropVoteHypothesisHook',
        mode='global',
        score_threshold={{_base_.conference_hypothesis.voc20.score_threshold}},
        top_k={{_base_.conference_hypothesis.voc20.top_k}}),
    dict(type='DatasetClassCheckHook'),
]
