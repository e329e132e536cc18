"""compute_bias_maps with the conference ReCLIP's image-dependent bias (docs/method.md
§11.1): ``B`` per image, ``Lr = Lq − B``, ``O = Lr`` (no decoder), and the masks of the
segmentor's own prediction."""
import os.path as osp

import torch
from mmseg.registry import MODELS

import mmseg_reclip  # noqa: F401
from mmseg_reclip.evaluation.bias_maps import bias_map, compute_bias_maps
from tests.experiment_utils import loop_query_logits, tiny_config, tiny_student_options

CONFIGS = osp.join(osp.dirname(__file__), '..', '..', 'configs')
CONFIG = osp.join(CONFIGS, 'reclip_conference', 'reclip-conf_vit-b16_voc.py')


@torch.no_grad()
def test_conference_maps_are_per_image(clip_file):
    cfg = tiny_config(CONFIG, clip_file)
    cfg.model.decode_head.show_progress = False
    model = MODELS.build(cfg.model)
    model.init_weights()
    head = model.decode_head
    g = torch.Generator().manual_seed(0)
    for p in head.classifier.parameters():  # a trained-looking bias
        p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    model.eval()
    x = torch.randn(2, 3, 48, 64, generator=g)
    maps = compute_bias_maps(model, x)
    feats = model.extract_feat(x)[0]
    extractor = head.bias_extractor
    ref = extractor.reference_embeddings().double()
    space = extractor.positional_features(tuple(feats.shape[-2:])).double()
    bias = torch.einsum('bdhw,cd->bchw', feats.double(), ref) + space[None]
    lq = loop_query_logits(feats, head.queries(), head.name_to_class, head.num_classes)
    tol = dict(rtol=1e-4, atol=1e-5 * float(bias.abs().max()))
    assert maps['B'].shape == (2, head.num_classes, *feats.shape[-2:])
    assert torch.allclose(maps['B'].double(), bias, **tol)
    assert not torch.allclose(maps['B'][0], maps['B'][1])
    assert torch.allclose(maps['Lr'].double(), lq - bias, **tol)
    assert torch.equal(maps['logits'], maps['Lr'].float())
    shape = tuple(x.shape[-2:])
    metas = [dict(img_shape=shape, ori_shape=shape, pad_shape=shape)] * 2
    assert torch.equal(maps['masks'], model.inference(x, metas).argmax(dim=1))
    assert bias_map(head, (5, 7)) is None


@torch.no_grad()
def test_ori_head_student_maps_use_its_own_classifier(clip_file):
    """Table IX "Ori. head" (§11.8): the report's logits are the student's conv_seg."""
    teacher_cfg = tiny_config(osp.join(CONFIGS, 'reclip', 'reclip_vit-b16_voc.py'), clip_file)
    teacher_cfg.model.decode_head.show_progress = False
    teacher = MODELS.build(teacher_cfg.model)
    teacher.init_weights()
    cfg = tiny_config(
        osp.join(CONFIGS, 'reclip', 'ablations', 'table9-1_distill-ori-head_deeplabv2-r101_voc.py'),
        clip_file,
        tiny_student_options('unused.pth'),
        prefix='model.teacher.')
    student = MODELS.build(cfg.model)
    student.decode_head.load_from_teacher(teacher.decode_head)
    student.eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    maps = compute_bias_maps(student, x)
    head = student.decode_head
    feats = head.forward_features(student.extract_feat(x))
    assert torch.equal(maps['logits'], head.conv_seg(feats))
    assert not torch.allclose(maps['logits'], head.classifier(feats))
