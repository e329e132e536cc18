# ReCLIP++ rectification (stage 1) on a frozen OpenAI CLIP ViT-B/16.
# Every value of docs/method.md (§3-§6) is a field here; defaults follow the released code.
# Self-contained (no base of its own) so that the released, distillation and leaf configs
# built on it stay at most three files deep; the CLIP part equals maskclip_vit-b16.py.
data_preprocessor = dict(
    type='SegDataPreProcessor',
    # CLIP's RGB mean/std in 0-255 units (docs/method.md §0).
    mean=[122.771, 116.746, 104.094],
    std=[68.501, 66.632, 70.323],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size_divisor=16)
model = dict(
    type='ReCLIP',
    data_preprocessor=data_preprocessor,
    # The one CLIP of the model (backbone, text encoder, crop votes and, in stage 2, the
    # teacher read it), e.g. --cfg-options model.clip.pretrained=/data/clip/vitb16.bin
    # QuickGELU is derived: from an open_clip tag, or True for a local file of a model
    # that has OpenAI weights (set model.clip.quick_gelu=False for a file of others).
    clip=dict(model_name='ViT-B-16', pretrained='openai', quick_gelu=None),
    # Feature dims, patch, PE grid and input size come from this CLIP (clip_dims);
    # dense_mode: 'maskclip' (value path) | 'sclip' | 'clearclip' | 'naclip'.
    backbone=dict(type='CLIPViTBackbone', dense_mode='maskclip'),
    decode_head=dict(
        type='ReCLIPHead',
        num_classes=20,
        class_names='voc20',
        templates='reclip85',
        text_encoder=dict(type='OpenCLIPTextEncoder'),
        # B = Conv1x1(PE) . R^T, R from [SOS] + context + name + [EOT] (docs/method.md §3)
        bias_extractor=dict(
            type='ReferenceBiasExtractor',
            num_context=73,  # M shared context vectors
            ctx_init='token0',  # token embedding of id 0
            ref_norm='global',  # R / ||R||_F
            name_token_mode='eot'),  # 'released' reproduces the released tokenisation
        bias_mode='subtract',  # Lr = Lq - B
        # O = BN(Conv5x5(concat(F, Lr))), hard Gumbel masks of 100 * O (docs/method.md §4)
        mask_decoder=dict(
            type='RectifiedMaskDecoder',
            kernel_size=5,
            gumbel_scale=100.0,  # conference ReCLIP: 1000
            gumbel_tau=1.0),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        loss_decode=dict(type='ReCLIPContrastiveLoss', logit_scale=100.0, loss_weight=1.0)),
    # Test-time prompt denoising: each leaf sets the dataset base's pd_threshold.
    pd_threshold=None,
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
