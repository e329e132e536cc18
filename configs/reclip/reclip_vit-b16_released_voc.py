# ReCLIP++ rectification, released checkpoint (VOC): evaluate the authors' weights.
# Same model, data and test settings as reclip_vit-b16_voc.py, with the options that
# reproduce the released forward pass exactly (method doc §1, §3). Convert, then test:
#   python tools/model_converters/reclip_released_to_mmseg.py \
#       <released voc checkpoint>.pth checkpoints/reclip_vit-b16_released_voc.pth \
#       --num-classes 20
#   python tools/test.py configs/reclip/reclip_vit-b16_released_voc.py \
#       checkpoints/reclip_vit-b16_released_voc.pth
_base_ = ['./reclip_vit-b16_voc.py']
released_ln_eps = 1e-6  # the released code forces block LayerNorm eps 1e-6 (CLIP: 1e-5)
model = dict(
    backbone=dict(ln_eps=released_ln_eps),
    decode_head=dict(
        text_encoder=dict(ln_eps=released_ln_eps),
        num_context=73,  # released prompt: [SOS] + 73 context vectors + 3 name tokens
        ref_norm='global',  # R / ||R||_F
        # first 77-1-73 = 3 BPE tokens after SOS, feature at 1 + 73 + argmax(those tokens)
        name_token_mode='released'))
