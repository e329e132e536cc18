# ReCLIP++ stage 2 (distillation, docs/method.md §7): a DeepLab V2 ResNet-101 student learns
# from the frozen stage-1 model (the teacher = the stage-1 ReCLIP model config below).
#
# - The teacher is built and loaded from `model.teacher_checkpoint` only when training
#   (tools/test.py with a distilled checkpoint never builds it: no CLIP weights needed).
# - The student head inherits, frozen, Q, the bias (R, PE grid, PE projection) and the
#   mask decoder of the teacher; they are saved in the student's checkpoint.
# - Inputs: the data preprocessor normalises with CLIP's mean/std (teacher and crop
#   voting need CLIP inputs); `student_input_norm` re-normalises the same batch with
#   ImageNet's mean/std for the ImageNet-pretrained student backbone.
# - Loss = CE + lambda_feat * L1 + lambda_text * contrastive (docs/method.md §7: 0.5, 0.5).
_base_ = ['./reclip_vit-b16.py']

lambda_feat = 0.5  # λ1, feature-guided L1
lambda_text = 0.5  # λ2, text-guided contrastive
student_norm_cfg = dict(type='SyncBN', requires_grad=True)
teacher = {{_base_.model}}

# The distiller keeps the stage-1 model's data_preprocessor, `clip` (the teacher's CLIP,
# merged over teacher.clip: one switch, e.g. --cfg-options model.clip.pretrained=PATH),
# train_cfg and test_cfg; it replaces the backbone and the head with the student's.
model = dict(
    type='ReCLIPDistiller',
    teacher=teacher,
    # Stage-1 checkpoint: set per dataset, or --cfg-options model.teacher_checkpoint=PATH.
    teacher_checkpoint=None,
    target='online',  # 'pseudo_label': CE target from tools/generate_pseudo_labels.py
    student_input_norm=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]),
    backbone=dict(
        _delete_=True,  # the student's, not CLIP
        type='ResNetV1c',
        depth=101,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        norm_cfg=student_norm_cfg,
        norm_eval=False,
        style='pytorch',
        contract_dilation=True,
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnet101_v1c')),
    decode_head=dict(
        _delete_=True,  # the student's, not ReCLIPHead
        type='ReCLIPStudentHead',
        in_channels=2048,
        in_index=3,
        channels=512,  # ASPP-V2 output channels
        feature_module=dict(type='ASPPV2', dilations=(6, 12, 18, 24), init_std=0.01),
        num_classes=20,
        class_names='voc20',
        # Frozen copies of the teacher's bias extractor and mask decoder (docs/method.md §7),
        # filled from the stage-1 checkpoint: the student needs no CLIP. Their sizes
        # (embed_dim = the teacher's D, bias_extractor pe_channels / pe_grid) are derived
        # from the teacher's CLIP config (model.clip.model_name).
        bias_extractor=dict(type='ReferenceBiasExtractor'),
        bias_mode='subtract',  # must match the teacher
        mask_decoder=dict(
            type='RectifiedMaskDecoder',
            kernel_size=5,  # must match the teacher
            gumbel_scale=100.0,
            gumbel_tau=1.0),
        align_corners=False,
        loss_decode=[
            dict(type='MaskGuidedCELoss', loss_weight=1.0),
            dict(type='FeatureGuidedL1Loss', loss_weight=lambda_feat),
            dict(type='TextGuidedContrastiveLoss', loss_weight=lambda_text, logit_scale=100.0),
        ]),
    pd_threshold=None)  # no prompt denoising in distillation eval (docs/method.md §8)
