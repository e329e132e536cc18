"""LinearProbeSegmentor (paper Table I protocol, docs/method.md §11.9): the probed model
is the frozen trained one (loaded from its checkpoint, never saved, never trained); the
probe is W·e + b on its embeddings."""
import os.path as osp

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmseg.registry import MODELS

import mmseg_reclip  # noqa: F401
from tests.experiment_utils import tiny_config

CONFIGS = osp.join(osp.dirname(__file__), '..', '..', '..', 'configs')


@pytest.fixture(scope='module')
def trained(clip_file, tmp_path_factory):
    """A tiny stage-1 model with non-trivial trainables, saved as a checkpoint."""
    cfg = tiny_config(osp.join(CONFIGS, 'reclip', 'reclip_vit-b16_voc.py'), clip_file)
    cfg.model.decode_head.show_progress = False
    model = MODELS.build(cfg.model)
    model.init_weights()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.decode_head.mask_decoder.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    path = str(tmp_path_factory.mktemp('lp') / 'stage1.pth')
    torch.save(dict(state_dict=model.state_dict()), path)
    return model.eval(), path


def probe(clip_file, ckpt, extra=()):
    cfg = tiny_config(
        osp.join(CONFIGS, 'linear_probe', 'lp_reclip_vit-b16_voc.py'), clip_file,
        [f'model.checkpoint={ckpt}', *extra])
    cfg.model.decode_head.show_progress = False
    model = MODELS.build(cfg.model)
    model.init_weights()
    return cfg, model


def test_probe_reads_the_frozen_model_and_trains_only_the_classifier(clip_file, trained):
    model, ckpt = trained
    cfg, lp = probe(clip_file, ckpt)
    inner = lp.backbone.model
    own = dict(model.named_parameters())
    loaded = {k: v for k, v in inner.named_parameters() if 'mask_decoder' in k}
    assert loaded and all(torch.equal(v, own[k]) for k, v in loaded.items())
    assert not [k for k, v in inner.named_parameters() if v.requires_grad]
    img = torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(1))
    (emb, ) = lp.extract_feat(img)
    assert torch.equal(emb, model.extract_feat(img)[0])
    w, b = lp.decode_head.conv_seg.weight[:, :, 0, 0], lp.decode_head.conv_seg.bias
    expected = torch.einsum('kd,bdhw->bkhw', w.double(), emb.double()) + b.double()[:, None, None]
    out = lp.decode_head.forward([emb]).double()
    assert torch.allclose(out, expected, rtol=1e-5, atol=1e-6 * float(expected.abs().max()))
    optim = build_optim_wrapper(lp, cfg.optim_wrapper)
    params = {id(p) for g in optim.optimizer.param_groups for p in g['params']}
    conv = lp.decode_head.conv_seg
    assert params == {id(conv.weight), id(conv.bias)}  # labels train the probe, nothing else
    assert sorted(lp.state_dict()) == ['decode_head.conv_seg.bias', 'decode_head.conv_seg.weight']
    lp.train()
    assert not inner.training  # frozen: BN and dropout stay in eval mode


def test_probe_width_is_the_embedding_width(clip_file, trained):
    """in_channels comes from the probed model (tiny CLIP: 64, not ViT-B/16's 512); a
    config value that disagrees is refused naming both."""
    _, ckpt = trained
    _, lp = probe(clip_file, ckpt)
    assert lp.decode_head.conv_seg.in_channels == lp.backbone.out_channels == 64
    with pytest.raises(ValueError, match='in_channels=512.*64 channels'):
        probe(clip_file, ckpt, ['model.probe_head.in_channels=512'])


def test_a_missing_checkpoint_is_a_clear_error(clip_file, tmp_path):
    with pytest.raises(FileNotFoundError, match='model.checkpoint=PATH'):
        probe(clip_file, str(tmp_path / 'nope.pth'))


def test_a_checkpoint_of_another_model_is_a_clear_error(clip_file, trained, tmp_path):
    model, _ = trained
    partial = {k: v for k, v in model.state_dict().items() if 'mask_decoder' not in k}
    path = str(tmp_path / 'partial.pth')
    torch.save(dict(state_dict=partial), path)
    with pytest.raises(ValueError, match='lacks.*mask_decoder'):
        probe(clip_file, path)
