# ReCLIP++ rectification (stage 1) on a frozen OpenAI CLIP ViT-B/16.
# Every value of the method doc (§3-§6) is a field here; defaults follow the released code.
_base_ = ['./maskclip_vit-b16.py']
# CLIP: `model.clip` of the MaskCLIP base (one switch for every part).
model = dict(
    type='ReCLIP',
    decode_head=dict(
        type='ReCLIPHead',
        # B = Conv1x1(PE) . R^T, R from [SOS] + context + name + [EOT] (method §3)
        bias_extractor=dict(
            type='ReferenceBiasExtractor',
            num_context=73,  # M shared context vectors
            ctx_init='token0',  # token embedding of id 0
            ref_norm='global',  # R / ||R||_F
            name_token_mode='eot'),  # 'released' reproduces the released tokenisation
        bias_mode='subtract',  # Lr = Lq - B
        # O = BN(Conv5x5(concat(F, Lr))), hard Gumbel masks of 100 * O (method §4)
        mask_decoder=dict(
            type='RectifiedMaskDecoder',
            kernel_size=5,
            gumbel_scale=100.0,  # conference ReCLIP: 1000
            gumbel_tau=1.0),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        loss_decode=dict(type='ReCLIPContrastiveLoss', logit_scale=100.0, loss_weight=1.0)),
    pd_threshold=None,
    test_cfg=dict(mode='whole'))
