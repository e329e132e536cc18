# MaskCLIP (training-free) in the planted-bias world: argmax of F·Qᵀ.
#   python tools/test.py benchmarks/planted_bias/configs/planted_maskclip.py none
_base_ = ['./planted_reclip.py']
model = dict(
    type='MaskCLIP',
    decode_head=dict(
        _delete_=True,
        type='MaskCLIPHead',
        in_channels=64,
        class_names={{_base_.class_names}},
        templates={{_base_.templates}},
        query_cache_dir=None,
        show_progress=False,
        text_encoder=dict(type='OpenCLIPTextEncoder')))
custom_hooks = [dict(type='DatasetClassCheckHook')]
