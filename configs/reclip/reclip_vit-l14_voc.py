# ReCLIP++ stage 1 on a frozen OpenAI CLIP ViT-L/14 (VOC). Same settings as
# reclip_vit-b16_voc.py; only the CLIP changes and every size follows from it (D=768,
# PE 1024 x 16 x 16, 14-px patches, crop-vote crops at 224). The 336 training crop and
# the 336 test short side are 24 patches of 14 px.
#   python tools/train.py configs/reclip/reclip_vit-l14_voc.py
# No published ReCLIP++ number exists for ViT-L/14 (see README).
_base_ = ['./reclip_vit-b16_voc.py']
model = dict(
    data_preprocessor=dict(size_divisor=14), clip=dict(model_name='ViT-L-14', pretrained='openai'))
