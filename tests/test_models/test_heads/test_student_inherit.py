"""ReCLIPStudentHead ``inherit`` (paper Table IX, docs/method.md §11.8): each row's
classifier against an independent computation."""
import pytest
import torch
from mmseg.registry import MODELS

import mmseg_reclip  # noqa: F401
from tests.experiment_utils import C, D, build_head, loop_query_logits, random_feats, randomize_


def student(teacher, inherit):
    head = MODELS.build(
        dict(
            type='ReCLIPStudentHead',
            in_channels=8,
            channels=8,
            class_names=teacher.class_names,
            num_classes=C,
            embed_dim=D,
            feature_module=None,
            bias_extractor=dict(pe_channels=D, pe_grid=(14, 14)),
            inherit=inherit))
    head.load_from_teacher(teacher)
    return head.eval()


@pytest.fixture(scope='module')
def teacher(clip_file):
    head = build_head(clip_file)
    randomize_(head.bias_extractor.pe_proj, seed=1)
    randomize_(head.mask_decoder, seed=2)
    return head.eval()


def test_each_row_of_table_ix(teacher):
    feats = random_feats(2, D, 3, 4)
    lq = loop_query_logits(feats, teacher.queries(), teacher.name_to_class, C)
    with torch.no_grad():
        bias = teacher.bias_extractor((3, 4)).double()
        full = teacher.forward([feats]).double()
        rows = {
            k: student(teacher, k).classify(feats).double()
            for k in [('query', ), ('query', 'bias'), ('query', 'bias', 'decoder')]
        }
    tol = dict(rtol=1e-4, atol=1e-5)
    assert torch.allclose(rows[('query', )], lq, **tol)
    assert torch.allclose(rows[('query', 'bias')], lq - bias[None], **tol)
    assert torch.allclose(rows[('query', 'bias', 'decoder')], full, **tol)


def test_ori_head_is_a_learnt_linear_classifier(teacher):
    head = student(teacher, ())
    randomize_(head.conv_seg, seed=3)
    feats = random_feats(2, D, 3, 4, seed=1)
    w, b = head.conv_seg.weight[:, :, 0, 0].double(), head.conv_seg.bias.double()
    expected = torch.einsum('cd,bdhw->bchw', w, feats.double()) + b[None, :, None, None]
    with torch.no_grad():
        assert torch.allclose(head.classify(feats).double(), expected, rtol=1e-5, atol=1e-6)
    trainable = {n for n, p in head.named_parameters() if p.requires_grad}
    assert {'conv_seg.weight', 'conv_seg.bias'} <= trainable
    assert not [n for n in trainable if n.startswith('classifier.')]


def test_other_combinations_are_refused(teacher):
    with pytest.raises(ValueError, match='inherit='):
        student(teacher, ('bias', ))
    with pytest.raises(ValueError, match='inherit='):
        student(teacher, ('query', 'decoder'))
