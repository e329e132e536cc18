# Table VII, MaskCLIP row: mIoU with the class-preference and space-preference bias
# metrics (docs/bias.md). Training-free: python tools/test.py <this config>.
_base_ = ['../../maskclip/maskclip_vit-b16_voc.py']
test_evaluator = [
    dict(type='IoUMetric', iou_metrics=['mIoU']),
    dict(type='ClassPreferenceMetric'),
    dict(type='SpacePreferenceMetric', bins=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0)),
]
