# Table VII, "ReCLIP++ (rec.)" row: the stage-1 model evaluated with the class-preference
# and space-preference bias metrics (docs/bias.md), same metrics as the MaskCLIP row.
#   python tools/test.py <this config> work_dirs/reclip_vit-b16_voc/iter_20000.pth
_base_ = ['../reclip_vit-b16_voc.py']
test_evaluator = [
    dict(type='IoUMetric', iou_metrics=['mIoU']),
    dict(type='ClassPreferenceMetric'),
    dict(type='SpacePreferenceMetric', bins=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0)),
]
