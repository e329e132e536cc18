# Conference ReCLIP parts for the planted-bias world (docs/method.md §11): the project's
# conference parts (coupled bias extractor, no decoder at Gumbel scale 1000) plus the
# world's global-score hypothesis rule. Taken by the planted Table III rows with
# {{_base_.*}}; no model of its own.
#
# The VOC rule (keep 100·cos >= 23, top-2 fallback) is tuned for real CLIP; the toy
# tower's global scores lie between ~92 and 100 (its class queries are close: largest
# off-diagonal cosine 0.976). The world's threshold reads NO label: it is Otsu's
# threshold of the pooled 100·cos scores of every training image (img_dir/train only) and
# class, computed by `python -m benchmarks.planted_bias.global_scores` (world /tmp/w3,
# world.json seed 0: 96.06, which keeps 3.6 classes per image on average, 1 to 5).
# Another world: rerun that script and pass --cfg-options custom_hooks.0.score_threshold=<t>
# (the value is copied into the hooks when the config is read). top_k: VOC's fallback, 2.
_base_ = ['../../../configs/_base_/models/reclip-conference_parts.py']
conference_planted_hypothesis = dict(score_threshold=96.06, top_k=2)
# Rows 1 and 2 take these hooks whole (custom_hooks = {{_base_.conference_planted_hooks}}).
conference_planted_hooks = [
    dict(
        type='CropVoteHypothesisHook',
        mode='global',
        score_threshold=conference_planted_hypothesis['score_threshold'],
        top_k=conference_planted_hypothesis['top_k'],
        input_size=224,  # the toy tower's input (it is not an open_clip backbone)
        num_workers=0,
        batch_size=128,
        precision='fp32',
        # planted_reclip.py's data_root (a second base may not define it again);
        # keyed by images, Q and settings: shared
        cache_dir='{{$PLANTED_ROOT:data/planted_bias}}/hypotheses'),
    dict(type='DatasetClassCheckHook'),
]
