"""tools/model_converters/reclip_released_to_mmseg.py: format, loading, released forward.

A checkpoint in the authors' released format (random values, tiny CLIP widths) is
converted with the command-line tool, loaded into a segmentor built from the released
VOC config (tiny CLIP substituted), and the head output is checked against an
independent re-implementation of the released forward pass written below with plain
torch and open_clip's own modules.
"""
import importlib.util
import inspect
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from open_clip.model import resize_pos_embed

from mmseg.registry import MODELS
from mmseg_reclip.models.decode_heads.maskclip_head import MaskCLIPHead
from tests.clip_utils import TINY, save_random_clip
from tool_utils import REPO_ROOT, run_tool

CONVERTER = 'tools/model_converters/reclip_released_to_mmseg.py'
CONFIG = REPO_ROOT / 'configs/reclip/reclip_vit-b16_released_voc.py'
M = 73  # released context length
WIDTH = 64  # tiny CLIP: text width, image width and embedding dim
C = 20
# 20 classes (VOC's count). Some names have >= 3 BPE tokens so that the released
# rule (feature at 74 + argmax of the first 3 name tokens) does not land on EOT:
# 'hippopotamus' -> argmax at slot 1, 'rhinoceros' -> slot 0, 'hippopotamus on a rock'
# (7 tokens) -> slot 1; 1- and 2-token names end on EOT.
NAMES = [
    'airplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
    'hippopotamus', 'dog', 'horse', 'motorbike', 'person', 'rhinoceros', 'sheep', 'sofa',
    'hippopotamus on a rock', 'tv monitor'
]
TRAINABLE = [
    'context', 'pe_proj.weight', 'pe_proj.bias', 'decoder_conv.weight', 'decoder_conv.bias',
    'decoder_norm.weight', 'decoder_norm.bias', 'decoder_norm.running_mean',
    'decoder_norm.running_var', 'decoder_norm.num_batches_tracked'
]
# Buffers of the frozen query head: not in released files, rebuilt from CLIP.
QUERY_BUFFERS = {'decode_head.query_embeds', 'decode_head.name_to_class',
                 'decode_head.query_ready',
                 'decode_head._extra_state'}  # class set: not in released files (warned)


def released_tensors(seed=0, num_classes=C, linear_pe=True, ctx_batch_dim=True):
    """The trainable tensors of a released checkpoint (released key names)."""
    g = torch.Generator().manual_seed(seed)
    ctx = 0.1 * torch.randn(M, WIDTH, generator=g)
    pe_w = torch.randn(WIDTH, WIDTH, generator=g) * WIDTH**-0.5
    conv_in = WIDTH + num_classes
    return {
        'text_encoder.prompt_token': ctx[None] if ctx_batch_dim else ctx,
        'pe_proj.weight': pe_w if linear_pe else pe_w[:, :, None, None],
        'pe_proj.bias': 0.1 * torch.randn(WIDTH, generator=g),
        'decoder_conv2.weight':
        torch.randn(num_classes, conv_in, 5, 5, generator=g) * (conv_in * 25)**-0.5,
        'decoder_conv2.bias': 0.1 * torch.randn(num_classes, generator=g),
        'decoder_norm2.weight': 1 + 0.2 * torch.randn(num_classes, generator=g),
        'decoder_norm2.bias': 0.1 * torch.randn(num_classes, generator=g),
        'decoder_norm2.running_mean': 0.1 * torch.randn(num_classes, generator=g),
        'decoder_norm2.running_var': 0.5 + torch.rand(num_classes, generator=g),
        'decoder_norm2.num_batches_tracked': torch.tensor(1234),
    }


def write_released(path, tensors, frozen=True, wrap='state_dict'):
    """torch.save a released-style file: ``module.`` prefix, frozen CLIP keys, nesting."""
    state = {'module.' + k: v for k, v in tensors.items()}
    if frozen:
        state['module.text_encoder.token_embedding.weight'] = torch.randn(10, WIDTH)
        state['module.text_encoder.transformer.resblocks.0.attn.in_proj_weight'] = \
            torch.randn(3 * WIDTH, WIDTH)
        state['module.clip_model.visual.conv1.weight'] = torch.randn(WIDTH, 3, 16, 16)
    obj = {wrap: state, 'epoch': 7} if wrap else state
    torch.save(obj, path)
    return str(path)


def load_converter():
    spec = importlib.util.spec_from_file_location('reclip_released_to_mmseg',
                                                  REPO_ROOT / CONVERTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def clip_file(tmp_path_factory):
    return save_random_clip(str(tmp_path_factory.mktemp('clip') / 'tiny.pt'), TINY)


def build_released_segmentor(clip_file):
    cfg = Config.fromfile(str(CONFIG))
    cfg.model.backbone.update(model_name=TINY, pretrained=clip_file)
    head = cfg.model.decode_head
    head.text_encoder.update(model_name=TINY, pretrained=clip_file)
    head.update(
        in_channels=WIDTH,
        norm_cfg=dict(type='BN', requires_grad=True),
        templates='single',
        class_names=NAMES,
        show_progress=False)
    if 'query_cache_dir' in inspect.signature(MaskCLIPHead.__init__).parameters:
        head.query_cache_dir = None  # never write a cache under ~ from the tests
    return MODELS.build(cfg.model)


# -- independent re-implementation of the released forward pass -------------------------
def released_clip(clip_file, image_size):
    """open_clip's model from the same file, at ``image_size``, block LayerNorm eps 1e-6."""
    model = open_clip.create_model(TINY, force_image_size=image_size)
    sd = torch.load(clip_file)
    resize_pos_embed(sd, model, antialias=False)
    model.load_state_dict(sd)
    model.eval()
    for tower in (model.transformer, model.visual.transformer):
        for block in tower.resblocks:
            block.ln_1.eps = 1e-6
            block.ln_2.eps = 1e-6
    return model


def released_dense_features(model, img):
    """MaskCLIP features: open_clip's ViT with the last block attending to itself only
    (softmax of a diagonal mask is one-hot, which leaves the value path)."""
    visual = model.visual
    visual.output_tokens = True
    h, w = img.shape[-2] // 16, img.shape[-1] // 16
    eye = torch.full((1 + h * w, 1 + h * w), float('-inf'))
    eye.fill_diagonal_(0.0)

    def self_only(module, args, kwargs):
        kwargs['attn_mask'] = eye
        return args, kwargs

    handle = visual.transformer.resblocks[-1].register_forward_pre_hook(self_only,
                                                                         with_kwargs=True)
    try:
        _, tokens = visual(img)
    finally:
        handle.remove()
    feats = F.normalize(tokens @ visual.proj, dim=-1)
    return feats.transpose(1, 2).reshape(img.shape[0], -1, h, w)


def released_reference(model, ctx):
    """R: full 77-token prompts [SOS, 73 ctx, first 3 name tokens], causal transformer,
    feature at 74 + argmax(name tokens), ln_final, projection, R / ||R||_F."""
    tokens = open_clip.get_tokenizer(TINY)(NAMES)
    emb = model.token_embedding(tokens)
    x = torch.cat([emb[:, :1], ctx.expand(C, -1, -1), emb[:, 1:4]], dim=1)
    assert x.shape[1] == 77
    x = x + model.positional_embedding
    x = model.transformer(x, attn_mask=model.attn_mask)
    idx = 1 + M + tokens[:, 1:4].argmax(dim=-1)
    ref = model.ln_final(x[torch.arange(C), idx]) @ model.text_projection
    return ref / ref.norm()


def released_forward(clip_file, tensors, img):
    model = released_clip(clip_file, tuple(img.shape[-2:]))
    with torch.no_grad():
        feats = released_dense_features(model, img)  # [1, D, h, w]
        h, w = feats.shape[-2:]
        texts = [f'a photo of a {n}.' for n in NAMES]
        queries = F.normalize(model.encode_text(open_clip.get_tokenizer(TINY)(texts)), dim=-1)
        query_logits = torch.einsum('bdhw,cd->bchw', feats, queries)
        ref = released_reference(model, tensors['text_encoder.prompt_token'].reshape(1, M, -1))
        # PE grid of the 224 model (14 x 14), bicubically resized to the feature grid
        pe = torch.load(clip_file)['visual.positional_embedding'][1:]
        grid = pe.reshape(14, 14, -1).permute(2, 0, 1)[None]
        grid = F.interpolate(grid, size=(h, w), mode='bicubic', align_corners=False)
        pe_w = tensors['pe_proj.weight'].reshape(WIDTH, -1, 1, 1)
        pos = F.conv2d(grid, pe_w, tensors['pe_proj.bias'])[0]  # [D, h, w]
        bias = torch.einsum('dhw,cd->chw', pos, ref)
        x = torch.cat([feats, query_logits - bias[None]], dim=1)
        x = F.conv2d(x, tensors['decoder_conv2.weight'], tensors['decoder_conv2.bias'],
                     padding=2)
        out = F.batch_norm(x, tensors['decoder_norm2.running_mean'],
                           tensors['decoder_norm2.running_var'],
                           tensors['decoder_norm2.weight'], tensors['decoder_norm2.bias'],
                           training=False, eps=1e-5)
    return dict(feats=feats, ref=ref, bias=bias, out=out)


# -- tests --------------------------------------------------------------------------------
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
    assert head.ref_norm == 'global' and head.context.shape == (M, WIDTH)
    for blocks in (model.backbone.visual.transformer.resblocks,
                   head.text_encoder.tower.transformer.resblocks):
        assert all(b.ln_1.eps == 1e-6 and b.ln_2.eps == 1e-6 for b in blocks)

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
    torch.testing.assert_close(head.context, tensors['text_encoder.prompt_token'][0],
                               rtol=0, atol=0)
    assert int(head.decoder_norm.num_batches_tracked) == 1234

    model.eval()
    torch.manual_seed(3)
    img = torch.randn(1, 3, 64, 96)  # 4 x 6 patch grid: the PE grid is resized
    expected = released_forward(clip_file, tensors, img)
    with torch.no_grad():
        feats = model.extract_feat(img)
        out = head.forward(feats)
        ref = head.reference_embeddings()
        bias = head.bias(feats[0].shape[-2:])
    assert (feats[0] - expected['feats']).abs().max() <= 1e-5
    assert (ref - expected['ref']).abs().max() <= 1e-6
    assert (bias - expected['bias']).abs().max() <= 1e-5
    assert out.shape == (1, C, 4, 6)
    assert (out - expected['out']).abs().max() <= 1e-5
    # the released rule was in play: some features are not taken at the EOT token
    tokens = open_clip.get_tokenizer(TINY)(NAMES)[:, 1:4]
    assert (head.ref_eot == 1 + M + tokens.argmax(-1)).all()
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
    assert sd['decode_head.context'].shape == (M, WIDTH)
    assert sd['decode_head.pe_proj.weight'].shape == (WIDTH, WIDTH, 1, 1)
    torch.testing.assert_close(sd['decode_head.pe_proj.weight'].flatten(1),
                               tensors['pe_proj.weight'].flatten(1), rtol=0, atol=0)
    assert int(sd['decode_head.decoder_norm.num_batches_tracked']) == 0


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
    proc = run_tool([CONVERTER, src, str(dst), '--num-classes', '59'], check=False,
                    timeout=300)
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
