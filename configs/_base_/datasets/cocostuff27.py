# COCO-Stuff-164k with the 27 mid-level classes (STEGO / PiCIE protocol),
# ReCLIP++ settings. Unsupervised: the train pipeline reads images only (no
# LoadAnnotations, and RandomCrop with cat_max_ratio=1.0).
# Labels: run once
#   python tools/dataset_converters/coco_stuff27.py data/coco_stuff164k
# which writes annotations/{train2017,val2017}/*_labelTrainIds27.png (0..26,
# 255 ignore). To evaluate on a subset (e.g. a curated image list), set
#   val_dataloader = dict(dataset=dict(ann_file='path/to/list.txt'))
# with one image basename (no extension) per line.

dataset_type = 'COCOStuff27Dataset'
data_root = 'data/coco_stuff164k'
num_classes = 27
class_names = 'cocostuff27'  # key of mmseg_reclip.datasets.CLASS_NAMES
crop_size = (512, 512)
train_scale = (2048, 512)  # RandomResize base scale (long, short)
test_scale = (2048, 512)  # short side 512, long side <= 2048
# ReCLIP++ per-dataset values (read by the leaf configs through {{_base_.*}}):
crop_vote_window = 85  # crop-vote window, released crop_size / 6 (docs/method.md §5)
pd_threshold = 0.95  # released test-time prompt-denoising threshold (docs/method.md §8)

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
            data_prefix=dict(img_path='images/train2017', seg_map_path='annotations/train2017'),
            pipeline=train_pipeline)))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='images/val2017', seg_map_path='annotations/val2017'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
