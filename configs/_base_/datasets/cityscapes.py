# Cityscapes, 19 trainId classes, ReCLIP++ settings.
# Unsupervised: the train pipeline reads images only (no LoadAnnotations, and
# RandomCrop with cat_max_ratio=1.0). Labels: *_gtFine_labelTrainIds.png made
# by mmseg's tools/dataset_converters/cityscapes.py.

dataset_type = 'CheckedCityscapesDataset'  # mmseg's; errors name the file
data_root = 'data/cityscapes'
num_classes = 19
class_names = 'cityscapes19'  # key of mmseg_reclip.datasets.CLASS_NAMES
crop_size = (512, 512)
train_scale = (2048, 1024)  # RandomResize base scale (long, short)
test_scale = (2048, 448)  # short side 448 (1024x2048 -> 448x896)
# ReCLIP++ per-dataset values (read by the leaf configs through {{_base_.*}}):
crop_vote_window = 85  # crop-vote window, released crop_size / 6 (docs/method.md §5)
pd_threshold = 0.5  # released test-time prompt-denoising threshold (docs/method.md §8)

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
    # labels are loaded after Resize: metrics compare at original size
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
            data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
            pipeline=train_pipeline)))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
