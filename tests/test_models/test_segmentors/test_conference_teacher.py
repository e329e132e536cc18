"""The conference ReCLIP as a distillation teacher (docs/method.md §11.1-§11.2):
``DistillTeacher`` takes its checkpoint for its config, and refuses the ReCLIP++ one
(and the other way round) with the error of the mismatch."""
import os.path as osp

import pytest
import torch
from mmseg.registry import MODELS

import mmseg_reclip  # noqa: F401
from mmseg_reclip.models.segmentors.distill_teacher import DistillTeacher
from mmseg_reclip.models.utils.class_set import ClassSetMismatchError
from tests.experiment_utils import tiny_config

CONFIGS = osp.join(osp.dirname(__file__), '..', '..', '..', 'configs')
STAGE1 = dict(
    conference=osp.join(CONFIGS, 'reclip_conference', 'reclip-conf_vit-b16_voc.py'),
    reclip=osp.join(CONFIGS, 'reclip', 'reclip_vit-b16_voc.py'))


@pytest.fixture(scope='module')
def stage1(clip_file, tmp_path_factory):
    """``{name: (model config, checkpoint, trained model)}`` of both stage-1 methods."""
    root = tmp_path_factory.mktemp('teachers')
    out = {}
    for name, path in STAGE1.items():
        cfg = tiny_config(path, clip_file)
        cfg.model.decode_head.show_progress = False
        model = MODELS.build(cfg.model)
        model.init_weights()
        with torch.no_grad():  # a trained-looking classifier (the init is all token 0)
            g = torch.Generator().manual_seed(len(out))
            for p in model.decode_head.classifier.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        ckpt = str(root / f'{name}.pth')
        torch.save(dict(state_dict=model.state_dict()), ckpt)
        out[name] = (cfg.model, ckpt, model.eval())
    return out


def test_conference_checkpoint_builds_its_teacher(stage1):
    cfg, ckpt, model = stage1['conference']
    teacher = DistillTeacher(cfg, ckpt).build(model.decode_head.class_names)
    head = teacher.decode_head
    assert type(head.mask_decoder).__name__ == 'NoMaskDecoder'
    feats = torch.nn.functional.normalize(
        torch.randn(1, 64, 3, 4, generator=torch.Generator().manual_seed(1)), dim=1)
    with torch.no_grad():
        assert torch.equal(head.forward((feats, )), model.decode_head.forward((feats, )))


def test_checkpoint_of_the_other_method_is_refused(stage1):
    conf_cfg, conf_ckpt, conf = stage1['conference']
    reclip_cfg, reclip_ckpt, _ = stage1['reclip']
    names = conf.decode_head.class_names
    # ReCLIP++'s PE projection maps to D, the conference one to C: shapes differ
    with pytest.raises(ClassSetMismatchError, match='pe_proj.weight'):
        DistillTeacher(conf_cfg, reclip_ckpt).build(names)
    # the conference checkpoint has no mask decoder for a ReCLIP++ teacher
    with pytest.raises(ValueError, match='mask_decoder'):
        DistillTeacher(reclip_cfg, conf_ckpt).build(names)
