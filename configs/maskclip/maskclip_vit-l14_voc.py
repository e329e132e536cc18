# Training-free MaskCLIP on a frozen OpenAI CLIP ViT-L/14 (768-d joint space, 1024 wide,
# 14-px patches): python tools/test.py configs/maskclip/maskclip_vit-l14_voc.py
# Every dimension comes from model.clip (configs/_base_/models/maskclip_vit-b16.py keeps
# none). Test images: short side 336 = 24 patches of 14 px (ViT-B/16: 21 of 16).
_base_ = ['./maskclip_vit-b16_voc.py']
model = dict(
    # patch-sized batch padding (the backbone pads to its patch anyway)
    data_preprocessor=dict(size_divisor=14),
    clip=dict(model_name='ViT-L-14', pretrained='openai'))
