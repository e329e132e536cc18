# PASCAL Context, 59 classes (background ignored), ReCLIP++ settings.
# Unsupervised: the train pipeline reads images only (no LoadAnnotations, and
# RandomCrop with cat_max_ratio=1.0 so no label is ever looked at).
# Layout: mmseg's PASCAL Context (VOC2010 + SegmentationClassContext made by
# mmseg's tools/dataset_converters/pascal_context.py).

dataset_type = 'CheckedPascalContextDataset59'  # mmseg's; errors name the file
data_root = 'data/VOCdevkit/VOC2010'
num_classes = 59
class_names = 'context59'  # key of mmseg_reclip.datasets.CLASS_NAMES
crop_size = (480, 480)
train_scale = (2048, 520)  # RandomResize base scale (long, short)
test_scale = (2048, 448)  # short side 448, long side <= 2048
# ReCLIP++ per-dataset values (read by the leaf configs through {{_base_.*}}):
crop_vote_window = 80  # crop-vote window, released crop_size / 6 (docs/method.md §5)
pd_threshold = 0.85  # released test-time prompt-denoising threshold (docs/method.md §8)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResize', scale=train_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=test_scale, keep_ratio=True),
    # labels are loaded after Resize: metrics compare at original size;
    # reduce_zero_label (True for PascalContextDataset59) comes from the
    # dataset
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    # Each sample is augmented under its own seed from (seed, epoch, position, rank),
    # the same with any num_workers and under mmseg's own tools/train.py
    # (mmseg_reclip.utils.data_seeding). Plain mmseg behaviour: use the inner sampler
    # and dataset directly. Dataset keys live one level down:
    #   --cfg-options train_dataloader.dataset.dataset.data_root=DIR
    sampler=dict(type='StepSeededSampler', sampler=dict(type='InfiniteSampler', shuffle=True)),
    dataset=dict(
        type='StepSeededDataset',
        dataset=dict(
            type=dataset_type,
            data_root=data_root,
            data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassContext'),
            ann_file='ImageSets/SegmentationContext/train.txt',
            reduce_zero_label=True,
            pipeline=train_pipeline)))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassContext'),
        ann_file='ImageSets/SegmentationContext/val.txt',
        reduce_zero_label=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
