# ReCLIP++ distillation on VOC into DeepLab V2 ResNet-50-v1c (the released code's student;
# the paper uses ResNet-101). Everything else as reclip-distill_deeplabv2-r101_voc.py.
#   python tools/train.py configs/reclip/reclip_vit-b16_voc.py                 # stage 1
#   python tools/train.py configs/reclip/reclip-distill_deeplabv2-r50_voc.py   # stage 2
#   python tools/test.py configs/reclip/reclip-distill_deeplabv2-r50_voc.py \
#       work_dirs/reclip-distill_deeplabv2-r50_voc/iter_20000.pth
_base_ = './reclip-distill_deeplabv2-r101_voc.py'
model = dict(
    backbone=dict(
        depth=50,
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnet50_v1c')))
