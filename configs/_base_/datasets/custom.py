# Your own images: every image under `data_root` (recursive, sorted), no annotation,
# no split file. Two settings, given as environment variables (read here when mmengine
# loads the config, so mmseg's own tools see them too) or by editing the defaults here:
#   DATA_ROOT=my_photos CLASS_NAMES=my_classes.txt \
#       python tools/train.py configs/reclip/reclip_vit-b16_custom.py
# They are read as values, not with the text substitution of mmengine (`$VAR` in double
# braces), which pastes the text into this file: a quote in a path would be Python code.
# `sys` because mmengine takes a config that imports a module outside
# `sys.builtin_module_names` (`os` is one on Python >= 3.11) for a lazy-import config.
import sys

__environ = sys.modules['os'].environ  # a `__` name: not a config setting
data_root = __environ.get('DATA_ROOT') or 'data/my_images'  # the folder of images
# one class per line, synonyms separated by commas, '#' comments (docs/own_data.md)
class_names = __environ.get('CLASS_NAMES') or 'data/my_images/classes.txt'
# Optional validation on a labelled folder: VAL_IMG_DIR and VAL_ANN_DIR (label PNGs
# holding class indices in the order of the class file, 255 = ignore, same file names as
# the images; VAL_IMG_SUFFIX, default .jpg). Then the run evaluates mIoU with IoUMetric
# (metrics only: training never reads them). Unset: no val loop at all.
val_img_dir = __environ.get('VAL_IMG_DIR') or 'none'
val_ann_dir = __environ.get('VAL_ANN_DIR') or 'none'
val_img_suffix = __environ.get('VAL_IMG_SUFFIX') or '.jpg'

num_classes = None  # taken from the class-name file
# Crop-vote window (docs/method.md §5): the released crop_size / 6 for a 336 crop.
crop_vote_window = 56
# Test-time prompt denoising (docs/method.md §8): no released threshold for your data.
pd_threshold = None
crop_size = (336, 336)
train_scale = (2048, 512)  # RandomResize base scale (long, short)
test_scale = (2048, 448)  # short side 448, long side <= 2048

# Unsupervised: images only (no LoadAnnotations; cat_max_ratio=1.0 never reads labels).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResize', scale=train_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
# Inference pipeline (tools/infer.py, init_model/inference_model, MMSegInferencer).
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=test_scale, keep_ratio=True),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='StepSeededSampler', sampler=dict(type='InfiniteSampler', shuffle=True)),
    dataset=dict(
        type='StepSeededDataset',
        dataset=dict(
            # class_names only names the classes in the checkpoint's meta; no label is read
            type='UnlabeledImageDataset',
            data_root=data_root,
            class_names=class_names,
            pipeline=train_pipeline)))
# `tools/test.py CONFIG CHECKPOINT` on the unlabeled folder writes the predicted label
# maps (no metric: there is no ground truth); tools/infer.py also draws them.
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='UnlabeledImageDataset',
        data_root=data_root,
        class_names=class_names,
        pipeline=test_pipeline))
test_evaluator = dict(type='IoUMetric', format_only=True, output_dir='work_dirs/custom_predictions')
val_dataloader = None
val_evaluator = None
if val_img_dir not in ('', 'none') and val_ann_dir not in ('', 'none'):
    val_dataloader = dict(
        batch_size=1,
        num_workers=2,
        persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(
            type='LabelledImageFolderDataset',
            class_names=class_names,
            data_prefix=dict(img_path=val_img_dir, seg_map_path=val_ann_dir),
            img_suffix=val_img_suffix,
            seg_map_suffix='.png',
            pipeline=test_pipeline[:2] + [dict(type='LoadAnnotations')] + test_pipeline[2:]))
    val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
# The final configs take their val_cfg from here (mmengine needs val_cfg, val_dataloader
# and val_evaluator all set or all None).
custom_val_cfg = dict(type='ValLoop') if val_dataloader else None
