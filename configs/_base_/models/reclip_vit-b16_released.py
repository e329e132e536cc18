# ReCLIP++ rectification with the forward pass of the authors' released code, for
# checkpoints converted by tools/model_converters/reclip_released_to_mmseg.py.
# Differences from reclip_vit-b16.py (see README "Deviations from the released pipeline"):
_base_ = ['./reclip_vit-b16.py']
model = dict(
    # Image tower only: the released code sets eps 1e-6 on the ViT's residual-block
    # LayerNorms (CLIP: 1e-5); the text tower (Q and R) keeps 1e-5 (docs/method.md §1).
    backbone=dict(ln_eps=1e-6),
    decode_head=dict(
        bias_extractor=dict(
            num_context=73,  # released prompt: [SOS] + 73 context vectors + 3 name tokens
            ref_norm='global',  # R / ||R||_F
            # first 77-1-73 = 3 BPE tokens after SOS, feature at 1 + 73 + argmax(them)
            name_token_mode='released')),
    # Grid logits resized straight to the unpadded resized image (docs/method.md §8).
    upsample_mode='released',
    # Prompt denoising on the grid-level decoder output, no fallback (docs/method.md §8); the
    # threshold is set per dataset.
    pd_mode='grid',
    pd_fallback=False)
