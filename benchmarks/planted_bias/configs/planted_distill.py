# ReCLIP++ stage 2 (distillation, docs/method.md §7) in the planted-bias world: a small
# DeepLab V2-style student learns from the frozen planted stage-1 model (the teacher =
# planted_reclip.py's model, loaded from model.teacher_checkpoint). The planted twin of
# configs/reclip/reclip-distill_deeplabv2-r50_voc.py and
# configs/_base_/models/reclip-distill_deeplabv2-r101.py, for one CPU core:
#   PLANTED_ROOT=<world> python tools/train.py benchmarks/planted_bias/configs/planted_reclip.py
#   PLANTED_ROOT=<world> python tools/train.py benchmarks/planted_bias/configs/planted_distill.py \
#       --cfg-options model.teacher_checkpoint=work_dirs/planted_reclip/iter_1000.pth
#
# Same as the VOC distillation: the online teacher target (its argmax), the three losses
# with λ1 = λ2 = 0.5, the inherited frozen Q, bias and mask decoder, crop-vote hypotheses
# for the text-guided loss (the stage-1 hook: same images, same cache), SGD 0.01 with poly
# decay to 1e-4. Training reads img_dir/train only (planted_reclip.py's pipeline: no
# label). Different, for a CPU:
# - student: ResNetV1c-18 at a quarter width (BasicBlock; stem 32, stages 16/32/64/128
#   channels, so in_channels = 8 · base_channels = 128), dilated as DeepLab V2 (strides
#   1, 2, 1, 1, dilations 1, 1, 2, 4: output stride 8, a 28 x 28 grid of the 224 x 224
#   input), no pretrained weights (ImageNet mean/std for its input only), BN instead of
#   SyncBN; ASPP-V2 with 128 channels (the paper's 512).
# - 200 iterations of batch 8 (stage 1's batch; 4 epochs of the 400 training images):
#   ~1.26 s an iteration, ~5 min a run with the evaluation on one core (OMP_NUM_THREADS=1;
#   measured 4 min 56 s on world /tmp/w3).
_base_ = ['./planted_reclip.py']

lambda_feat = 0.5  # λ1, feature-guided L1
lambda_text = 0.5  # λ2, text-guided contrastive
student_norm_cfg = dict(type='BN', requires_grad=True)  # one CPU process
teacher = {{_base_.model}}

model = dict(
    type='ReCLIPDistiller',
    teacher=teacher,
    # The planted stage-1 checkpoint; --cfg-options model.teacher_checkpoint=PATH.
    teacher_checkpoint='work_dirs/planted_reclip/iter_1000.pth',
    target='online',
    student_input_norm=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]),
    backbone=dict(
        _delete_=True,  # the student's, not the toy tower
        type='ResNetV1c',
        depth=18,
        stem_channels=32,
        base_channels=16,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        norm_cfg=student_norm_cfg,
        norm_eval=False,
        style='pytorch',
        contract_dilation=True,
        init_cfg=None),  # no pretrained weights
    decode_head=dict(
        _delete_=True,  # the student's, not ReCLIPHead
        type='ReCLIPStudentHead',
        in_channels=128,  # BasicBlock: 8 · base_channels
        in_index=3,
        channels=128,  # ASPP-V2 output channels (paper: 512)
        feature_module=dict(type='ASPPV2', dilations=(6, 12, 18, 24), init_std=0.01),
        class_names={{_base_.class_names}},
        # Frozen copies of the teacher's parts (sizes from the teacher's CLIP config).
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

max_iters = 200
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1))
