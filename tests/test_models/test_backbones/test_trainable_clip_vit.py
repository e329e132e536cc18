"""TrainableCLIPViTBackbone (paper Table VI, docs/method.md §11.6): the image encoder
trains, and the optimizer of the Table VI config holds exactly it + the usual trainables."""
import os.path as osp

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmseg.registry import MODELS

import mmseg_reclip  # noqa: F401
from mmseg_reclip.models.backbones.clip_vit import dense_features
from mmseg_reclip.models.segmentors.maskclip import inject_clip_cfg
from tests.clip_utils import TINY
from tests.experiment_utils import tiny_config

CFG = osp.join(
    osp.dirname(__file__), '..', '..', '..', 'configs', 'reclip', 'ablations',
    'table6_finetune-clip_vit-b16_voc.py')
USUAL = ('decode_head.classifier.bias_extractor.context',
         'decode_head.classifier.bias_extractor.pe_proj.', 'decode_head.classifier.mask_decoder.')


def build(clip_file):
    cfg = tiny_config(CFG, clip_file)
    cfg.model.decode_head.show_progress = False
    model = MODELS.build(cfg.model)
    model.init_weights()
    return cfg, model


def test_optimizer_holds_the_image_encoder_and_the_usual_trainables(clip_file):
    cfg, model = build(clip_file)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    in_optim = {id(p) for g in optim.optimizer.param_groups for p in g['params']}
    names = {n for n, p in model.named_parameters() if id(p) in in_optim}
    visual = {n for n, _ in model.named_parameters() if n.startswith('backbone.visual.')}
    assert visual and visual <= names
    assert names - visual == {n for n, _ in model.named_parameters() if n.startswith(USUAL)}
    assert not [n for n in names if 'text_encoder' in n]
    assert all(g['lr'] == cfg.optim_wrapper.optimizer.lr for g in optim.optimizer.param_groups)


def test_features_carry_gradients_and_train_mode_follows(clip_file):
    _, model = build(clip_file)
    backbone = model.backbone.train()
    assert backbone.visual.training
    img = torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    (feats, ) = backbone(img)
    with torch.no_grad():
        ref = dense_features(backbone.visual, img)
    assert torch.allclose(feats, ref, rtol=1e-5, atol=1e-6)  # the frozen backbone's path
    feats.sum().backward()
    assert backbone.visual.conv1.weight.grad.abs().sum() > 0
    assert any(k.startswith('backbone.visual.') for k in model.state_dict())


def test_takes_the_frozen_backbones_arguments_and_the_clip_switch(clip_file):
    """CLIPViTBackbone's keyword arguments (here a dense-feature recipe) reach it, and
    the model-level ``clip`` switch fills it like the frozen backbone."""
    backbone, _ = inject_clip_cfg(
        dict(type='TrainableCLIPViTBackbone', dense_mode='clearclip'), {},
        dict(model_name=TINY, pretrained=clip_file))
    assert backbone['model_name'] == TINY and backbone['pretrained'] == clip_file
    model = MODELS.build(backbone)
    assert model.dense_mode == 'clearclip' and model.embed_dim == 64
    img = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = dense_features(model.visual, img, 'clearclip')
        assert not torch.allclose(ref, dense_features(model.visual, img))  # another recipe
    assert torch.allclose(model(img)[0], ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match='save_weights=False'):
        MODELS.build(dict(backbone, save_weights=False))
