"""Checkpoints written before the heads held a bias extractor and a mask decoder still
load: stage-1 heads, converted released files, distilled students and, through the
distiller, stage-1 teacher checkpoints. The old key names are written out here, by an
explicit table, independently of the tables inside the heads."""
import torch
import torch.nn.functional as F
from mmengine.runner.checkpoint import load_state_dict as mmengine_load_state_dict

from tests.test_models.test_segmentors.test_distill import build, student_cfg, teacher_cfg

# new key -> key of the code before the refactor (November 2026)
TEACHER_OLD = {
    'bias_extractor.context': 'context',
    'bias_extractor.pe_proj.weight': 'pe_proj.weight',
    'bias_extractor.pe_proj.bias': 'pe_proj.bias',
    'mask_decoder.conv.weight': 'decoder_conv.weight',
    'mask_decoder.conv.bias': 'decoder_conv.bias',
    'mask_decoder.norm.weight': 'decoder_norm.weight',
    'mask_decoder.norm.bias': 'decoder_norm.bias',
    'mask_decoder.norm.running_mean': 'decoder_norm.running_mean',
    'mask_decoder.norm.running_var': 'decoder_norm.running_var',
    'mask_decoder.norm.num_batches_tracked': 'decoder_norm.num_batches_tracked',
}
STUDENT_OLD = {
    'bias_extractor.reference': 'reference',
    'bias_extractor.pos_embed': 'pos_embed',
    'bias_extractor.pe_proj.weight': 'pe_proj_weight',
    'bias_extractor.pe_proj.bias': 'pe_proj_bias',
    'mask_decoder.conv.weight': 'decoder_weight',
    'mask_decoder.conv.bias': 'decoder_bias',
    'mask_decoder.norm.weight': 'decoder_bn_weight',
    'mask_decoder.norm.bias': 'decoder_bn_bias',
    'mask_decoder.norm.running_mean': 'decoder_bn_mean',
    'mask_decoder.norm.running_var': 'decoder_bn_var',
}


def to_old(state, table, prefix='decode_head.'):
    out = {}
    for key, value in state.items():
        short = key[len(prefix):] if key.startswith(prefix) else None
        out[prefix + table[short] if short in table else key] = value.clone()
    return out


def test_stage1_checkpoint_with_old_keys_loads_and_predicts_the_same(files):  # noqa: F811
    clip, ckpt = files
    state = torch.load(ckpt, map_location='cpu', weights_only=False)['state_dict']
    old = to_old(state, TEACHER_OLD)
    assert 'decode_head.context' in old and 'decode_head.decoder_norm.running_var' in old
    reference, model = build(teacher_cfg(clip)), build(teacher_cfg(clip))
    reference.load_state_dict(state, strict=True)
    # both routes: torch's strict load and mmengine's (the runner's, converted files)
    model.load_state_dict(dict(old), strict=True)
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key
    other = build(teacher_cfg(clip))
    mmengine_load_state_dict(other, dict(old), strict=True)
    assert torch.equal(other.decode_head.mask_decoder.norm.running_var,
                       state['decode_head.mask_decoder.norm.running_var'])
    feats = F.normalize(torch.randn(2, 64, 6, 7), dim=1)
    with torch.no_grad():
        torch.testing.assert_close(
            model.eval().decode_head.forward((feats, )),
            reference.eval().decode_head.forward((feats, )),
            rtol=0,
            atol=0)


def test_distiller_takes_an_old_teacher_checkpoint(files, tmp_path):  # noqa: F811
    clip, ckpt = files
    saved = torch.load(ckpt, map_location='cpu', weights_only=False)
    old_ckpt = str(tmp_path / 'old_teacher.pth')
    torch.save(
        dict(meta=saved['meta'], state_dict=to_old(saved['state_dict'], TEACHER_OLD)), old_ckpt)
    new, old = build(student_cfg(clip, ckpt)), build(student_cfg(clip, old_ckpt))
    new.init_weights()
    old.init_weights()
    assert bool(old.decode_head.inherited)
    inherited = new.decode_head.inherited_keys()
    assert len(inherited) == 12
    for key in inherited:
        value = new.decode_head.state_dict()[key]
        assert torch.equal(old.decode_head.state_dict()[key], value), key


def test_old_student_checkpoint_loads_with_its_bn_eps(files):  # noqa: F811
    clip, ckpt = files
    model = build(student_cfg(clip, ckpt))
    model.init_weights()
    state = model.state_dict()
    old = to_old(state, STUDENT_OLD)
    del old['decode_head.mask_decoder.norm.num_batches_tracked']  # the old student had none
    old['decode_head.decoder_bn_eps'] = torch.tensor(1e-3)  # the old eps buffer
    assert 'decode_head.decoder_weight' in old and 'decode_head.pe_proj_bias' in old
    fresh = build(student_cfg(clip, None))
    fresh.load_state_dict(old, strict=True)
    assert bool(fresh.decode_head.inherited)
    eps = float(torch.tensor(1e-3))  # as the old head read its float32 buffer
    assert fresh.decode_head.mask_decoder.norm.eps == eps
    x = torch.randn(1, 3, 48, 64)
    model.decode_head.mask_decoder.norm.eps = eps
    with torch.no_grad():
        torch.testing.assert_close(
            fresh.eval()._forward(x), model.eval()._forward(x), rtol=0, atol=0)
