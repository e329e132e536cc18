# PASCAL VOC 2012, 20 object classes (background ignored), ReCLIP++ settings.
# Unsupervised: the train pipeline reads images only (no LoadAnnotations, and
# RandomCrop with cat_max_ratio=1.0 so no label is ever looked at).
# The train split is VOC 2012 `train.txt` (1464 images). To train on the SBD
# "aug" list instead, override e.g.
#   train_dataloader = dict(dataset=dict(dataset=dict(
#       ann_file='ImageSets/Segmentation/trainaug.txt')))
# (any list of basenames works: labels are not read during training).

dataset_type = 'PascalVOC20Dataset'
data_root = 'data/VOCdevkit/VOC2012'
num_classes = 20
class_names = 'voc20'  # key of mmseg_reclip.datasets.CLASS_NAMES
crop_size = (336, 336)
train_scale = (2048, 512)  # RandomResize base scale (long, short)
test_scale = (2048, 336)  # short side 336, long side <= 2048
# ReCLIP++ per-dataset values (read by the leaf configs through {{_base_.*}}):
crop_vote_window = 56  # crop-vote window, released crop_size / 6 (docs/method.md §5)
pd_threshold = 1.0  # released test-time prompt-denoising threshold (docs/method.md §8)

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
    # reduce_zero_label comes from the dataset
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
            data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
            ann_file='ImageSets/Segmentation/train.txt',
            pipeline=train_pipeline)))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/val.txt',
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
