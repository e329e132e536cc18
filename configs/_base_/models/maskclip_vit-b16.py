# MaskCLIP (training-free): frozen OpenAI CLIP ViT-B/16, dense value-path features,
# template-ensemble queries. `clip_model` / `clip_pretrained` are shared by every CLIP part;
# `clip_pretrained` is an open_clip tag ('openai', downloads where there is internet) or a
# local weights file path.
clip_model = 'ViT-B-16'
clip_pretrained = 'openai'
data_preprocessor = dict(
    type='SegDataPreProcessor',
    # CLIP's RGB mean/std in 0-255 units (method §0).
    mean=[122.771, 116.746, 104.094],
    std=[68.501, 66.632, 70.323],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size_divisor=16)
model = dict(
    type='MaskCLIP',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='CLIPViTBackbone', model_name=clip_model, pretrained=clip_pretrained),
    decode_head=dict(
        type='MaskCLIPHead',
        in_channels=512,
        num_classes=20,
        class_names='voc20',
        templates='reclip85',
        text_encoder=dict(
            type='OpenCLIPTextEncoder', model_name=clip_model, pretrained=clip_pretrained)),
    pd_threshold=None,
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
