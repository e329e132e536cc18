# PASCAL VOC 2012 (20 classes) for distillation: the training crop is 512 (stage 1: 336),
# docs/method.md §8. The train pipeline is redefined because voc20.py built its own with crop 336.
# Images only: no labels.
_base_ = ['./voc20.py']
crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResize', scale={{_base_.train_scale}}, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))
