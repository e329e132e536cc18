# Conference ReCLIP (CVPR 2024) parts, docs/method.md §11: leaf configs take them with
# {{_base_.*}} on top of a ReCLIP++ config (this file has no model of its own).
#
# Coupled bias (§11.1): B = F·Rᵀ + Conv1x1(PE) -> C, subtracted; R is the same learnable
# Reference prompt as ReCLIP++ (M = 73, token-0 init, R / ‖R‖_F).
conference_bias_extractor = dict(type='CoupledBiasExtractor')
# No mask decoder (§11.2): O = Lr; hard Gumbel masks of 1000·O.
conference_mask_decoder = dict(
    _delete_=True, type='NoMaskDecoder', gumbel_scale=1000.0, gumbel_tau=1.0)
# Global-score hypotheses (§5, §11.3): classes with 100·cos(global image feature, Q) >=
# score_threshold, top-K fallback; per dataset.
conference_hypothesis = dict(
    voc20=dict(score_threshold=23.0, top_k=2),
    context59=dict(score_threshold=20.0, top_k=6),
    ade20k=dict(score_threshold=21.0, top_k=5),
    cityscapes=dict(score_threshold=21.5, top_k=2),
    cocostuff27=dict(score_threshold=20.0, top_k=8))
