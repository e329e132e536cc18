# ReCLIP++ distillation on VOC with OFFLINE mask targets: the CE term reads the stage-1
# teacher's argmax masks, written once as PNGs (pseudo labels, not ground truth); the
# teacher still runs online for the feature-guided L1 term (and the crop votes).
#   python tools/train.py configs/reclip/reclip_vit-b16_voc.py                       # stage 1
#   python tools/generate_pseudo_labels.py configs/reclip/reclip-distill_deeplabv2-r101_voc_offline.py
#   python tools/train.py configs/reclip/reclip-distill_deeplabv2-r101_voc_offline.py # stage 2
_base_ = './reclip-distill_deeplabv2-r101_voc.py'
pseudo_label_dir = 'work_dirs/reclip_vit-b16_voc/pseudo_labels'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadPseudoLabel', pseudo_label_dir=pseudo_label_dir),  # never the GT
    dict(
        type='RandomResize',
        scale={{_base_.train_scale}},
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size={{_base_.crop_size}}, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(
        type='PackSegInputs',
        meta_keys=('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape',
                   'scale_factor', 'flip', 'flip_direction', 'reduce_zero_label',
                   'pseudo_label_path'))
]
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))
model = dict(target='pseudo_label')
