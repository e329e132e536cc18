# Training-free SCLIP dense features (backbone dense_mode='sclip') on a frozen OpenAI CLIP
# ViT-B/16, evaluated exactly as the MaskCLIP baseline (configs/maskclip): 85 templates,
# short side 336, whole-image inference, no PAMR (see README for the papers' protocols).
#   python tools/test.py configs/training_free/sclip_vit-b16_voc.py
_base_ = ['../maskclip/maskclip_vit-b16_voc.py']
model = dict(backbone=dict(dense_mode='sclip'))
