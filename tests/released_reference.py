"""An independent re-implementation of the authors' released ReCLIP++ test, and helpers
to write checkpoints in the released format, for the converter and released-config tests.

Written with plain torch and open_clip's own modules from the released code's behaviour
(docs/method.md §1, §3, §8): eps 1e-6 on the image tower's block LayerNorms only, the
image zero-padded to a multiple of 16, prompt denoising on the grid-level decoder output
without fallback, grid logits resized straight to the unpadded resized size and then to
the original size. The CLIP file is in the form of a state dict taken from OpenAI's
TorchScript archive (fp16 tensors plus three non-weight entries).
"""
import importlib.util
import inspect

import open_clip
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmseg.registry import MODELS
from open_clip.model import resize_pos_embed

from mmseg_reclip.models.decode_heads.maskclip_head import MaskCLIPHead
from tests.clip_utils import TINY, save_random_clip
from tests.tool_utils import REPO_ROOT

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
    'classifier.bias_extractor.context', 'classifier.bias_extractor.pe_proj.weight',
    'classifier.bias_extractor.pe_proj.bias', 'classifier.mask_decoder.conv.weight',
    'classifier.mask_decoder.conv.bias', 'classifier.mask_decoder.norm.weight',
    'classifier.mask_decoder.norm.bias', 'classifier.mask_decoder.norm.running_mean',
    'classifier.mask_decoder.norm.running_var', 'classifier.mask_decoder.norm.num_batches_tracked'
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


def archive_clip_file(tmp_path_factory) -> str:
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
