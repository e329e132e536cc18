# ReCLIP++ stage 2 on VOC with the ViT-L/14 stage-1 model as teacher
# (configs/reclip/reclip_vit-l14_voc.py); otherwise as reclip-distill_deeplabv2-r101_voc.py.
# model.clip switches the teacher's CLIP; the student's inherited parts take their sizes
# (embed_dim 768, PE 1024 x 16 x 16) from it.
#   python tools/train.py configs/reclip/reclip_vit-l14_voc.py                       # stage 1
#   python tools/train.py configs/reclip/reclip-distill_deeplabv2-r101_vit-l14_voc.py
_base_ = [
    '../_base_/models/reclip-distill_deeplabv2-r101.py', '../_base_/datasets/voc20_distill.py',
    '../_base_/schedules/schedule_distill_20k.py', '../_base_/default_runtime.py'
]

model = dict(
    # the CLIP-normalised batch is padded for the teacher's 14-px patches
    data_preprocessor=dict(size_divisor=14),
    clip=dict(model_name='ViT-L-14', pretrained='openai'),
    teacher=dict(
        decode_head=dict(num_classes={{_base_.num_classes}}, class_names={{_base_.class_names}})),
    teacher_checkpoint='work_dirs/reclip_vit-l14_voc/iter_20000.pth',
    decode_head=dict(num_classes={{_base_.num_classes}}, class_names={{_base_.class_names}}),
    pd_threshold=None)  # no prompt denoising in distillation eval
custom_hooks = [
    dict(
        type='CropVoteHypothesisHook',
        window={{_base_.crop_vote_window}},
        stride=None,
        min_frequency=0.0),
    dict(type='DatasetClassCheckHook'),
]
