"""tools/model_converters/reclip_released_to_mmseg.py: format, loading, released forward.

A checkpoint in the authors' released format (random values, tiny CLIP widths) is
converted with the command-line tool, loaded into a segmentor built from the released
VOC config (tiny CLIP substituted), and the head output is checked against the
independent released forward of :mod:`tests.released_reference`.
"""
from pathlib import Path

import open_clip
import pytest
import torch
from mmengine.runner import load_checkpoint

from tests.clip_utils import TINY
from tests.released_reference import (CONVERTER, NAMES, QUERY_BUFFERS, TRAINABLE, WIDTH, C, M,
                                      archive_clip_file, build_released_segmentor, load_converter,
                                      released_forward, released_tensors, write_released)
from tests.tool_utils import run_tool


@pytest.fixture(scope='module')
def clip_file(tmp_path_factory):
    """Random tiny CLIP saved like a state dict from OpenAI's archive."""
    return archive_clip_file(tmp_path_factory)


def test_convert_load_and_released_forward(tmp_path, clip_file):
    tensors = released_tensors()
    src = write_released(tmp_path / 'released_voc.pth', tensors)
    dst = tmp_path / 'out' / 'converted.pth'
    proc = run_tool([CONVERTER, src, str(dst), '--num-classes', str(C)], timeout=300)
    assert 'ignored 3 frozen CLIP keys' in proc.stdout
    assert 'unrecognised' not in proc.stdout

    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    assert set(ckpt) == {'meta', 'state_dict'}
    assert ckpt['meta']['source'] == str(Path(src).resolve())
    assert 'reclip_released_to_mmseg' in ckpt['meta']['converted_by']
    assert ckpt['meta']['num_classes'] == C and ckpt['meta']['num_context'] == M
    assert set(ckpt['state_dict']) == {'decode_head.' + k for k in TRAINABLE}
    assert not list(tmp_path.joinpath('out').glob('*.tmp'))  # atomic write left nothing

    model = build_released_segmentor(clip_file)
    # the released config's switches reached the modules
    head = model.decode_head
    assert head.bias_extractor.ref_norm == 'global'
    assert head.bias_extractor.context.shape == (M, WIDTH)
    blocks = model.backbone.visual.transformer.resblocks
    assert all(b.ln_1.eps == 1e-6 and b.ln_2.eps == 1e-6 for b in blocks)
    # the text tower (Q, R) keeps CLIP's eps
    blocks = head.text_encoder.tower.transformer.resblocks
    assert all(b.ln_1.eps == 1e-5 and b.ln_2.eps == 1e-5 for b in blocks)
    assert (model.upsample_mode, model.pd_mode, model.pd_fallback, model.pd_threshold) == \
        ('released', 'grid', False, 1.0)

    # no unexpected key, no missing key but the query buffers, every shape right
    own = model.state_dict()
    assert set(ckpt['state_dict']) <= set(own)
    assert set(own) - set(ckpt['state_dict']) <= QUERY_BUFFERS
    for key, value in ckpt['state_dict'].items():
        assert value.shape == own[key].shape, key
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and trainable <= set(ckpt['state_dict'])
    # the runner's route (mmengine's checkpoint loader) takes the file as well
    model = build_released_segmentor(clip_file)
    load_checkpoint(model, str(dst), map_location='cpu', strict=False)
    head = model.decode_head
    torch.testing.assert_close(
        head.bias_extractor.context, tensors['text_encoder.prompt_token'][0], rtol=0, atol=0)
    assert int(head.mask_decoder.norm.num_batches_tracked) == 1234

    model.eval()
    torch.manual_seed(3)
    img = torch.randn(1, 3, 64, 96)  # 4 x 6 patch grid: the PE grid is resized
    expected = released_forward(clip_file, tensors, img)
    with torch.no_grad():
        feats = model.extract_feat(img)
        out = head.forward(feats)
        ref = head.bias_extractor.reference_embeddings()
        bias = head.bias_extractor(feats[0].shape[-2:])
    assert (feats[0] - expected['feats']).abs().max() <= 1e-5
    assert (ref - expected['ref']).abs().max() <= 1e-6
    assert (bias - expected['bias']).abs().max() <= 1e-5
    assert out.shape == (1, C, 4, 6)
    assert (out - expected['out']).abs().max() <= 1e-5
    # the released rule was in play: some features are not taken at the EOT token
    tokens = open_clip.get_tokenizer(TINY)(NAMES)[:, 1:4]
    assert (head.bias_extractor.ref_eot == 1 + M + tokens.argmax(-1)).all()
    assert (tokens.max(-1).values != head.text_encoder.eot_token_id).sum() == 3


def test_converted_checkpoint_loads_strictly(tmp_path, clip_file):
    # regression: frozen modules once refilled non-persistent buffers on load, so
    # `text_encoder.tower.attn_mask` was an unexpected key in every strict load
    src = write_released(tmp_path / 'released.pth', released_tensors())
    dst = tmp_path / 'converted.pth'
    load_converter().convert(src, str(dst), num_classes=C)
    model = build_released_segmentor(clip_file)
    state = dict(torch.load(dst, weights_only=True)['state_dict'])
    own = model.state_dict()
    state.update({k: own[k] for k in QUERY_BUFFERS})  # rebuilt from CLIP, never released
    model.load_state_dict(state, strict=True)


# -- end-to-end predictions of the released config -----------------------------------
@pytest.mark.parametrize('linear_pe,ctx_batch_dim,wrap', [(True, False, 'model'),
                                                          (False, True, None)])
def test_convert_accepts_layouts(tmp_path, linear_pe, ctx_batch_dim, wrap):
    converter = load_converter()
    tensors = released_tensors(linear_pe=linear_pe, ctx_batch_dim=ctx_batch_dim)
    del tensors['decoder_norm2.num_batches_tracked']  # old BatchNorm: filled with 0
    src = write_released(tmp_path / 'src.pth', tensors, frozen=False, wrap=wrap)
    info = converter.convert(src, str(tmp_path / 'dst.pth'))
    assert info['num_classes'] == C and info['num_context'] == M
    assert info['ignored_frozen_clip_keys'] == [] and info['ignored_other_keys'] == []
    sd = torch.load(tmp_path / 'dst.pth', weights_only=True)['state_dict']
    assert sd['decode_head.classifier.bias_extractor.context'].shape == (M, WIDTH)
    assert sd['decode_head.classifier.bias_extractor.pe_proj.weight'].shape == (WIDTH, WIDTH, 1, 1)
    torch.testing.assert_close(
        sd['decode_head.classifier.bias_extractor.pe_proj.weight'].flatten(1),
        tensors['pe_proj.weight'].flatten(1),
        rtol=0,
        atol=0)
    assert int(sd['decode_head.classifier.mask_decoder.norm.num_batches_tracked']) == 0


def test_missing_key_is_listed(tmp_path):
    tensors = released_tensors()
    del tensors['decoder_conv2.bias']
    del tensors['pe_proj.weight']
    src = write_released(tmp_path / 'broken.pth', tensors)
    dst = tmp_path / 'dst.pth'
    proc = run_tool([CONVERTER, src, str(dst)], check=False, timeout=300)
    assert proc.returncode != 0
    assert 'decoder_conv2.bias' in proc.stderr and 'pe_proj.weight' in proc.stderr
    assert 'Found keys' in proc.stderr and 'decoder_conv2.weight' in proc.stderr
    assert '3 frozen CLIP keys' in proc.stderr
    assert 'Traceback' not in proc.stderr
    assert not dst.exists()


def test_class_count_mismatch(tmp_path):
    src = write_released(tmp_path / 'released.pth', released_tensors())
    dst = tmp_path / 'dst.pth'
    proc = run_tool([CONVERTER, src, str(dst), '--num-classes', '59'], check=False, timeout=300)
    assert proc.returncode != 0
    assert '--num-classes 59' in proc.stderr and f'{C} classes' in proc.stderr
    assert not dst.exists()


def test_errors_in_process(tmp_path):
    converter = load_converter()
    tensors = released_tensors()
    # an already-converted file is recognised
    converted, _ = converter.convert_state_dict(tensors)
    with pytest.raises(converter.ConversionError, match='already converted'):
        converter.convert_state_dict(converted)
    bad = dict(tensors)
    bad['decoder_norm2.running_var'] = torch.ones(C + 1)
    with pytest.raises(converter.ConversionError, match='decoder_norm2.running_var'):
        converter.convert_state_dict(bad)
    bad = dict(tensors)
    bad['text_encoder.prompt_token'] = torch.zeros(2, M, WIDTH)
    with pytest.raises(converter.ConversionError, match='prompt_token'):
        converter.convert_state_dict(bad)
    with pytest.raises(converter.ConversionError, match='--num-context 8'):
        converter.convert_state_dict(tensors, num_context=8)
    src = write_released(tmp_path / 'same.pth', tensors)
    with pytest.raises(converter.ConversionError, match='differ'):
        converter.convert(src, src)
