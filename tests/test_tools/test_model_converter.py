"""tools/model_converters/reclip_released_to_mmseg.py: format, loading, released forward.

A checkpoint in the authors' released format (random values, tiny CLIP widths) is
converted with the command-line tool, loaded into a segmentor built from the released
VOC config (tiny CLIP substituted), and the head output and the final predictions are
checked against an independent re-implementation of the released test written below
with plain torch and open_clip's own modules, from the released code's behaviour
(docs/method.md §1, §3, §8): eps 1e-6 on the image tower's block LayerNorms only, the
image zero-padded to a multiple of 16, prompt denoising on the grid-level decoder output
without fallback, grid logits resized straight to the unpadded resized size and then to
the original size. The CLIP file is in the form of a state dict taken from OpenAI's
TorchScript archive (fp16 tensors plus three non-weight entries).
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
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from open_clip.model import resize_pos_embed

from mmseg_reclip.models.decode_heads.maskclip_head import MaskCLIPHead
from tests.clip_utils import TINY, save_random_clip
from tests.tool_utils import REPO_ROOT, run_tool

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
    'bias_extractor.context', 'bias_extractor.pe_proj.weight', 'bias_extractor.pe_proj.bias',
    'mask_decoder.conv.weight', 'mask_decoder.conv.bias', 'mask_decoder.norm.weight',
    'mask_decoder.norm.bias', 'mask_decoder.norm.running_mean', 'mask_decoder.norm.running_var',
    'mask_decoder.norm.num_batches_tracked'
]
# Buffers of the frozen query head: not in released files, rebuilt from CLIP.
QUERY_BUFFERS = {
    'decode_head.query_embeds', 'decode_head.name_to_class', 'decode_head.query_ready',
    'decode_head._extra_state'
}  # class set: not in released files (warned)


def released_tensors(seed=0, num_classes=C, linear_pe=True, ctx_batch_dim=True):
    """The trainable tensors of a released checkpoint (released key names)."""
    g = torch.Generator().manual_seed(seed)
    ctx = 0.1 * torch.randn(M, WIDTH, generator=g)
    pe_w = torch.randn(WIDTH, WIDTH, generator=g) * WIDTH**-0.5
    conv_in = WIDTH + num_classes
    return {
        'text_encoder.prompt_token':
        ctx[None] if ctx_batch_dim else ctx,
        'pe_proj.weight':
        pe_w if linear_pe else pe_w[:, :, None, None],
        'pe_proj.bias':
        0.1 * torch.randn(WIDTH, generator=g),
        'decoder_conv2.weight':
        torch.randn(num_classes, conv_in, 5, 5, generator=g) * (conv_in * 25)**-0.5,
        'decoder_conv2.bias':
        0.1 * torch.randn(num_classes, generator=g),
        'decoder_norm2.weight':
        1 + 0.2 * torch.randn(num_classes, generator=g),
        'decoder_norm2.bias':
        0.1 * torch.randn(num_classes, generator=g),
        'decoder_norm2.running_mean':
        0.1 * torch.randn(num_classes, generator=g),
        'decoder_norm2.running_var':
        0.5 + torch.rand(num_classes, generator=g),
        'decoder_norm2.num_batches_tracked':
        torch.tensor(1234),
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
    spec = importlib.util.spec_from_file_location('reclip_released_to_mmseg', REPO_ROOT / CONVERTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Non-weight entries of the state dict of OpenAI's TorchScript archive (dropped by the
#: released code's CLIP loader).
ARCHIVE_KEYS = {'input_resolution': 224, 'context_length': 77, 'vocab_size': 49408}


@pytest.fixture(scope='module')
def clip_file(tmp_path_factory):
    """Random tiny CLIP saved like a state dict taken from OpenAI's archive: fp16
    tensors plus ``input_resolution`` / ``context_length`` / ``vocab_size``."""
    folder = tmp_path_factory.mktemp('clip')
    state = torch.load(save_random_clip(str(folder / 'tiny.pt'), TINY))
    state = {k: v.half() for k, v in state.items()}
    state.update({k: torch.tensor(v) for k, v in ARCHIVE_KEYS.items()})
    path = folder / 'tiny_openai_archive.pt'
    torch.save(state, path)
    return str(path)


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
    """open_clip's model from the same file, at ``image_size`` (float32). As in the
    released code, the archive entries are dropped and only the *image* tower's block
    LayerNorms get eps 1e-6; the text tower (Q and R) keeps CLIP's 1e-5."""
    model = open_clip.create_model(TINY, force_image_size=image_size)
    sd = torch.load(clip_file)
    for key in ARCHIVE_KEYS:
        del sd[key]
    sd = {k: v.float() for k, v in sd.items()}
    resize_pos_embed(sd, model, antialias=False)
    model.load_state_dict(sd)
    model.eval()
    for block in model.visual.transformer.resblocks:
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

    handle = visual.transformer.resblocks[-1].register_forward_pre_hook(self_only, with_kwargs=True)
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
    """Grid-level decoder output of the released model for ``img`` (any size: zero-padded
    on the bottom/right to a multiple of 16, as the released ViT does)."""
    img = F.pad(img, (0, -img.shape[-1] % 16, 0, -img.shape[-2] % 16))
    model = released_clip(clip_file, tuple(img.shape[-2:]))
    with torch.no_grad():
        feats = released_dense_features(model, img)  # [1, D, h, w]
        h, w = feats.shape[-2:]
        texts = [f'a photo of a {n}.' for n in NAMES]
        queries = F.normalize(model.encode_text(open_clip.get_tokenizer(TINY)(texts)), dim=-1)
        query_logits = torch.einsum('bdhw,cd->bchw', feats, queries)
        ref = released_reference(model, tensors['text_encoder.prompt_token'].reshape(1, M, -1))
        # PE grid of the 224 model (14 x 14), bicubically resized to the feature grid
        pe = torch.load(clip_file)['visual.positional_embedding'][1:].float()
        grid = pe.reshape(14, 14, -1).permute(2, 0, 1)[None]
        grid = F.interpolate(grid, size=(h, w), mode='bicubic', align_corners=False)
        pe_w = tensors['pe_proj.weight'].reshape(WIDTH, -1, 1, 1)
        pos = F.conv2d(grid, pe_w, tensors['pe_proj.bias'])[0]  # [D, h, w]
        bias = torch.einsum('dhw,cd->chw', pos, ref)
        x = torch.cat([feats, query_logits - bias[None]], dim=1)
        x = F.conv2d(x, tensors['decoder_conv2.weight'], tensors['decoder_conv2.bias'], padding=2)
        out = F.batch_norm(
            x,
            tensors['decoder_norm2.running_mean'],
            tensors['decoder_norm2.running_var'],
            tensors['decoder_norm2.weight'],
            tensors['decoder_norm2.bias'],
            training=False,
            eps=1e-5)
    return dict(feats=feats, ref=ref, bias=bias, out=out)


def released_test(out, resized_shape, ori_shape, pd):
    """The released test after the model: prompt denoising on the grid output (peak of
    softmax(10 x) per class, classes below ``pd`` set to -100, no fallback), bilinear
    (align_corners=False) to the resized image size, then to the original size, softmax,
    argmax. Returns the final logits and the prediction."""
    out = out.clone()
    n, c = out.shape[:2]
    peak = F.softmax(out * 10, dim=1).view(n, c, -1).max(dim=-1)[0]
    out[(peak < pd)[:, :, None, None].expand_as(out)] = -100
    out = F.interpolate(out, resized_shape, None, 'bilinear', False)
    out = F.interpolate(out, ori_shape, None, 'bilinear', False)
    return out, F.softmax(out, dim=1).argmax(dim=1)


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
        bias = head.bias(feats[0].shape[-2:])
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
RESIZED = (64, 88)  # resized test image: 88 is not a multiple of 16 (4 x 6 grid over 96)
ORIGINAL = (50, 69)  # original image size: the released test resizes back to it
THRESHOLDS = (0.3, 0.5, 0.85, 0.95, 1.0)  # released PD values (VOC 1.0, ..., COCO 0.95)


@pytest.fixture(scope='module')
def released_models(tmp_path_factory, clip_file):
    """Per decoder variant: the converted model (released VOC config), its released
    tensors and the independent grid-level output for one image. ``confident`` scales
    the decoder's BatchNorm so that some classes saturate softmax(10 x) (pass PD 1.0)."""
    folder = tmp_path_factory.mktemp('released')
    torch.manual_seed(5)
    img = torch.randn(1, 3, *RESIZED)
    out = {}
    for variant, scale in (('plain', 1.0), ('confident', 40.0)):
        tensors = released_tensors(seed=1)
        tensors['decoder_norm2.weight'] = tensors['decoder_norm2.weight'] * scale
        tensors['decoder_norm2.bias'] = tensors['decoder_norm2.bias'] * scale
        src = write_released(folder / f'{variant}.pth', tensors)
        dst = str(folder / f'{variant}_converted.pth')
        load_converter().convert(src, dst, num_classes=C)
        model = build_released_segmentor(clip_file)
        load_checkpoint(model, dst, map_location='cpu', strict=False, logger='silent')
        model.eval()
        grid = released_forward(clip_file, tensors, img)['out']
        out[variant] = (model, grid)
    return img, out


def predict(model, img, **settings):
    """Our segmentor's test route (``predict``: inference + mmseg's postprocessing) with
    some test-time settings changed for this call."""
    saved = {k: getattr(model, k) for k in settings}
    for key, value in settings.items():
        setattr(model, key, value)
    try:
        with torch.no_grad():
            sample = SegDataSample(metainfo=dict(img_shape=RESIZED, ori_shape=ORIGINAL))
            result = model.predict(img, [sample])[0]
    finally:
        for key, value in saved.items():
            setattr(model, key, value)
    return result.seg_logits.data[None], result.pred_sem_seg.data


@pytest.mark.parametrize('variant', ['plain', 'confident'])
@pytest.mark.parametrize('threshold', (None, ) + THRESHOLDS)
def test_released_config_predicts_like_released_test(released_models, variant, threshold):
    img, models = released_models
    model, grid = models[variant]
    # no threshold: the released test with PD 0 (every peak passes)
    logits, pred = released_test(grid, RESIZED, ORIGINAL, threshold or 0.0)
    our_logits, our_pred = predict(model, img, pd_threshold=threshold)
    assert our_logits.shape == (1, C) + ORIGINAL
    assert (our_logits - logits).abs().max() <= 1e-5
    assert torch.equal(our_pred, pred)


def test_released_modes_are_what_makes_it_match(released_models):
    """Each released mode is needed: our own defaults differ from the released test on
    this image and these thresholds (so the comparison above can fail)."""
    img, models = released_models
    # upsampling: padded size + crop moves the logits of a non-multiple-of-16 image
    model, grid = models['plain']
    logits, _ = released_test(grid, RESIZED, ORIGINAL, 0.0)
    ours, _ = predict(model, img, upsample_mode='padded_crop', pd_threshold=None)
    assert (ours - logits).abs().max() > 1e-3
    # no fallback: no class reaches 1.0, so the released test removes every class (all
    # logits -100: the argmax is class 0 up to the rounding of the bilinear resizes,
    # which the released mode reproduces op for op); our fallback keeps the best class
    logits, _ = released_test(grid, RESIZED, ORIGINAL, 1.0)
    assert (logits + 100).abs().max() < 1e-3
    ours, pred = predict(model, img, pd_threshold=1.0, pd_fallback=True)
    assert (ours > -99).any() and len(pred.unique()) == 1
    # grid-level peaks: the kept classes differ from peaks taken after upsampling for
    # some (decoder, threshold)
    differs = 0
    for variant in models:
        model, grid = models[variant]
        for threshold in THRESHOLDS:
            logits, _ = released_test(grid, RESIZED, ORIGINAL, threshold)
            ours, _ = predict(model, img, pd_threshold=threshold, pd_mode='upsampled')
            kept = (logits > -99).flatten(2).any(-1)
            kept_ours = (ours > -99).flatten(2).any(-1)
            differs += int(not torch.equal(kept, kept_ours))
    assert differs >= 1
    # and the released thresholds keep different class sets (PD is really exercised):
    # plain keeps 6, 1, 1, 0, 0 classes at 0.3 ... 1.0, confident 6, 5, 5, 5, 5
    kept_sets = {
        tuple((released_test(grid, RESIZED, ORIGINAL, t)[0] > -99).flatten(2).any(-1)[0].tolist())
        for _, grid in models.values()
        for t in THRESHOLDS
    }
    assert len(kept_sets) >= 4


def test_released_upsampling_ignores_batch_padding(released_models):
    """A data preprocessor that pads test batches to a multiple of 16 (test_cfg) changes
    nothing: the released resize target is the unpadded size."""
    _, models = released_models
    model, _ = models['confident']
    raw = torch.randint(0, 256, (3, ) + RESIZED, dtype=torch.uint8)

    def run():
        sample = SegDataSample(metainfo=dict(img_shape=RESIZED, ori_shape=ORIGINAL))
        with torch.no_grad():
            return model.test_step(dict(inputs=[raw], data_samples=[sample]))[0]

    plain = run()
    preprocessor = model.data_preprocessor
    preprocessor.test_cfg = dict(size_divisor=16)
    try:
        padded = run()
    finally:
        preprocessor.test_cfg = None
    assert tuple(padded.metainfo['img_padding_size']) == (0, 8, 0, 0)
    assert (padded.seg_logits.data - plain.seg_logits.data).abs().max() <= 1e-5
    assert torch.equal(padded.pred_sem_seg.data, plain.pred_sem_seg.data)


@pytest.mark.parametrize('dataset,num_classes,threshold', [('voc', 20, 1.0), ('context', 59, 0.85),
                                                           ('ade', 150, 0.5),
                                                           ('cityscapes', 19, 0.5),
                                                           ('cocostuff27', 27, 0.95)])
def test_every_released_config_has_the_released_settings(dataset, num_classes, threshold):
    """All five released configs (one shared base): released eps (image tower only),
    upsampling, prompt denoising with the released threshold, tokenisation."""
    cfg = Config.fromfile(str(REPO_ROOT / f'configs/reclip/reclip_vit-b16_released_{dataset}.py'))
    model, head = cfg.model, cfg.model.decode_head
    assert model.backbone.ln_eps == 1e-6
    assert head.text_encoder.get('ln_eps') is None  # CLIP's 1e-5 on the text tower
    assert (model.upsample_mode, model.pd_mode, model.pd_fallback) == \
        ('released', 'grid', False)
    assert model.pd_threshold == threshold and model.test_cfg.mode == 'whole'
    extractor = head.bias_extractor
    assert (extractor.num_context, extractor.ref_norm, extractor.name_token_mode) == \
        (M, 'global', 'released')
    assert head.num_classes == num_classes == cfg.num_classes
    # the matching own config differs only in the released switches
    own = Config.fromfile(str(REPO_ROOT / f'configs/reclip/reclip_vit-b16_{dataset}.py'))
    assert own.model.pd_threshold == threshold
    assert own.test_dataloader == cfg.test_dataloader
    assert own.custom_hooks == cfg.custom_hooks


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
    assert sd['decode_head.bias_extractor.context'].shape == (M, WIDTH)
    assert sd['decode_head.bias_extractor.pe_proj.weight'].shape == (WIDTH, WIDTH, 1, 1)
    torch.testing.assert_close(
        sd['decode_head.bias_extractor.pe_proj.weight'].flatten(1),
        tensors['pe_proj.weight'].flatten(1),
        rtol=0,
        atol=0)
    assert int(sd['decode_head.mask_decoder.norm.num_batches_tracked']) == 0


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
