"""CoupledBiasExtractor (conference ReCLIP, docs/method.md §11.1) and NoMaskDecoder
(§11.2) against loops, in a head, and inherited by the student."""
import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

import mmseg_reclip  # noqa: F401
from mmseg_reclip.evaluation.bias_maps import bias_map
from mmseg_reclip.models.decode_heads.rectified_classifier import rectify
from tests.experiment_utils import C, D, build_head, loop_query_logits, random_feats, randomize_


def coupled_head(clip_file, **kwargs):
    head = build_head(
        clip_file,
        bias_extractor=dict(type='CoupledBiasExtractor', num_context=4),
        mask_decoder=dict(type='NoMaskDecoder', gumbel_scale=1000.0),
        **kwargs)
    randomize_(head.bias_extractor.pe_proj, seed=1)
    with torch.no_grad():
        head.bias_extractor.context.normal_(0, 0.02, generator=torch.Generator().manual_seed(2))
    return head


def loop_coupled_bias(extractor, feats):
    """``B[b, c, y, x] = Σ_d F[b,d,y,x] R[c,d] + Σ_k W[c,k] PE_{h×w}[k,y,x] + b[c]``."""
    _, _, h, w = feats.shape
    pe = F.interpolate(
        extractor.pe_grid()[None], size=(h, w), mode='bicubic', align_corners=False)[0].double()
    weight = extractor.pe_proj.weight[:, :, 0, 0].double()
    bias = extractor.pe_proj.bias.double()
    ref = extractor.reference_embeddings().double()
    f = feats.double()
    out = torch.zeros(f.shape[0], ref.shape[0], h, w, dtype=torch.float64)
    for b in range(f.shape[0]):
        for c in range(ref.shape[0]):
            for y in range(h):
                for x in range(w):
                    out[b, c, y, x] = (f[b, :, y, x] @ ref[c] + weight[c] @ pe[:, y, x] + bias[c])
    return out


def test_coupled_bias_equals_loops_and_depends_on_the_image(clip_file):
    head = coupled_head(clip_file).eval()
    feats = random_feats(2, D, 3, 5)
    with torch.no_grad():
        bias = head.bias_extractor((3, 5), feats=feats)
        ref = loop_coupled_bias(head.bias_extractor, feats)
    assert bias.shape == (2, C, 3, 5)
    assert torch.allclose(bias.double(), ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))
    assert not torch.allclose(bias[0], bias[1])  # image-dependent, unlike ReCLIP++'s B
    with pytest.raises(ValueError, match='needs the visual features'):
        head.bias_extractor((3, 5))


def test_head_rectifies_with_the_coupled_bias_and_no_decoder(clip_file):
    head = coupled_head(clip_file).eval()
    feats = random_feats(2, D, 4, 4, seed=3)
    with torch.no_grad():
        out = head.forward([feats])
        lq = loop_query_logits(feats, head.queries(), head.name_to_class, C)
        expected = lq - loop_coupled_bias(head.bias_extractor, feats)
    assert out.dtype == torch.float32
    assert torch.allclose(
        out.double(), expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
    add = coupled_head(clip_file, bias_mode='add').eval()
    add.load_state_dict(head.state_dict())
    with torch.no_grad():
        assert torch.allclose(
            add.forward([feats]).double(),
            rectify(lq, loop_coupled_bias(head.bias_extractor, feats), 'add'),
            rtol=1e-4,
            atol=1e-5 * float(expected.abs().max()))


def test_intermediates_hold_the_coupled_bias(clip_file):
    """The classifier's intermediates (read by the bias report) with a per-image ``B``."""
    head = coupled_head(clip_file).eval()
    feats = random_feats(2, D, 3, 4, seed=6)
    with torch.no_grad():
        maps = head.classifier.intermediates(feats)
        bias = loop_coupled_bias(head.bias_extractor, feats)
        lq = loop_query_logits(feats, head.queries(), head.name_to_class, C)
    tol = dict(rtol=1e-4, atol=1e-5 * float(bias.abs().max()))
    assert maps['B'].shape == (2, C, 3, 4)
    assert torch.allclose(maps['B'].double(), bias, **tol)
    assert torch.allclose(maps['Lq'].double(), lq, **tol)
    assert torch.allclose(maps['Lr'].double(), lq - bias, **tol)
    assert torch.equal(maps['O'], maps['Lr'].float())  # no decoder: O = Lr
    assert bias_map(head, (3, 4)) is None  # no head-alone map of a per-image bias


def test_no_mask_decoder_masks_and_gradients(clip_file):
    head = coupled_head(clip_file).train()
    assert not list(head.mask_decoder.parameters())
    feats = random_feats(2, D, 4, 4, seed=4)
    out = head.forward([feats])
    masks = head.classifier.sample_masks(out)
    assert torch.equal(masks.sum(1), torch.ones(2, 4, 4))
    # scale 1000 with a clear margin: the Gumbel noise cannot flip the argmax
    big = torch.zeros(1, C, 2, 2)
    big[0, 2] = 1.0
    assert torch.equal(head.classifier.sample_masks(big).argmax(1), torch.full((1, 2, 2), 2))
    (masks * out).sum().backward()
    trained = {n for n, p in head.named_parameters() if p.grad is not None}
    assert trained == {
        'classifier.bias_extractor.context', 'classifier.bias_extractor.pe_proj.weight',
        'classifier.bias_extractor.pe_proj.bias'
    }


def test_student_inherits_the_coupled_extractor(clip_file):
    teacher = coupled_head(clip_file).eval()
    student = MODELS.build(
        dict(
            type='ReCLIPStudentHead',
            in_channels=8,
            channels=8,
            class_names=teacher.class_names,
            num_classes=C,
            embed_dim=D,
            feature_module=None,
            bias_extractor=dict(type='CoupledBiasExtractor', pe_channels=D, pe_grid=(14, 14)),
            mask_decoder=dict(type='NoMaskDecoder', gumbel_scale=1000.0)))
    student.load_from_teacher(teacher)
    feats = random_feats(1, D, 3, 3, seed=5)
    with torch.no_grad():
        assert torch.allclose(
            student.classify(feats), teacher.forward([feats]), rtol=1e-5, atol=1e-6)
