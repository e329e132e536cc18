# MaskCLIP (training-free): frozen OpenAI CLIP ViT-B/16, dense value-path features,
# template-ensemble queries.
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
    type='MaskCLIP',
    data_preprocessor=data_preprocessor,
    # The one CLIP of the model: built once, the backbone uses its image tower, the
    # text encoder its text tower (the crop-vote hook and, in stage 2, the teacher read
    # the same entry). `pretrained`: an open_clip tag ('openai' downloads where there is
    # internet) or a local weights file, e.g.
    #   --cfg-options model.clip.pretrained=/data/clip/vitb16.bin
    # QuickGELU is derived: from an open_clip tag, or True for a local file of a model
    # that has OpenAI weights (set model.clip.quick_gelu=False for a file of others).
    # Keys set on the backbone / text_encoder themselves override these.
    clip=dict(model_name='ViT-B-16', pretrained='openai', quick_gelu=None),
    # Feature dims, patch, PE grid and input size come from this CLIP (clip_dims);
    # dense_mode: 'maskclip' (value path) | 'sclip' | 'clearclip' | 'naclip'.
    backbone=dict(type='CLIPViTBackbone', dense_mode='maskclip'),
    decode_head=dict(
        type='MaskCLIPHead',
        num_classes=20,
        class_names='voc20',
        templates='reclip85',
        text_encoder=dict(type='OpenCLIPTextEncoder')),
    pd_threshold=None,
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
