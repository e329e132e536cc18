# ReCLIP++ stage 1 (rectification), released settings of docs/method.md §8.
#   python tools/train.py configs/reclip/reclip_vit-b16_context.py
#   python tools/test.py configs/reclip/reclip_vit-b16_context.py work_dirs/reclip_vit-b16_context/iter_20000.pth
_base_ = [
    '../_base_/models/reclip_vit-b16.py', '../_base_/datasets/context59.py',
    '../_base_/schedules/schedule_20k.py', '../_base_/default_runtime.py'
]
model = dict(
    decode_head=dict(num_classes={{_base_.num_classes}}, class_names={{_base_.class_names}}),
    # Released test-time prompt denoising threshold (dataset base); None turns it off.
    pd_threshold={{_base_.pd_threshold}})
custom_hooks = [
    # Multi-label hypotheses by crop voting (docs/method.md §5), computed once before training
    # and cached in the work dir. Window: the dataset base's crop_vote_window
    # (released crop_size / 6), stride half the window.
    dict(
        type='CropVoteHypothesisHook',
        window={{_base_.crop_vote_window}},
        stride=None,
        min_frequency=0.0),
    dict(type='DatasetClassCheckHook'),
]
