#!/usr/bin/env python
"""Convert a released ReCLIP++ rectification checkpoint into an mmseg-reclip one.

The authors' released checkpoints (plain PyTorch) hold, possibly under a
``state_dict`` or ``model`` key and behind a ``module.`` (DataParallel/DDP) prefix::

    text_encoder.prompt_token         [73, W] or [1, 73, W]   context vectors
    pe_proj.weight                    [512, 768] or [512, 768, 1, 1]
    pe_proj.bias                      [512]
    decoder_conv2.weight / .bias      [C, 512 + C, 5, 5] / [C]
    decoder_norm2.{weight, bias, running_mean, running_var, num_batches_tracked}

plus, in some files, the frozen CLIP weights (ignored here: mmseg-reclip rebuilds CLIP
from the config's ``pretrained``). The output is an mmengine checkpoint
``dict(meta=..., state_dict=...)`` with the keys of :class:`ReCLIPHead` under
``decode_head.``; load it with a ``configs/reclip/reclip_vit-b16_released_*.py``
config, which reproduces the released forward pass::

    python tools/model_converters/reclip_released_to_mmseg.py \
        released/voc.pth checkpoints/reclip_vit-b16_released_voc.pth --num-classes 20
    python tools/test.py configs/reclip/reclip_vit-b16_released_voc.py \
        checkpoints/reclip_vit-b16_released_voc.pth

The frozen query embeddings (``decode_head.query_embeds``) are not in the released
files; the head builds them from CLIP on first use, so the runner's (non-strict) load
reports them as missing: that is expected.

Only torch is needed (no mmseg import); the file is written atomically by the project's
helper (:func:`mmseg_reclip.utils.io.atomic_torch_save`, loaded on its own).
Files converted before the head held its bias extractor and mask decoder as modules
(keys ``decode_head.context``, ``decode_head.pe_proj.*``, ``decode_head.decoder_conv.*``,
``decode_head.decoder_norm.*``) still load: the head renames them.
"""
import argparse
import difflib
import importlib.util
import os.path as osp
import pickle
import sys
import zipfile
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Tuple

import torch


def _shared_io():
    """``mmseg_reclip/utils/io.py`` (the project's one atomic-write helper),
    loaded on its own: importing the package would import mmseg and mmcv, and this
    tool needs only torch (its errors stay one clean line)."""
    here = osp.join(osp.dirname(osp.abspath(__file__)), '..', '..', 'mmseg_reclip')
    root = here if osp.isdir(here) else None
    if root is None:  # a copy of the tool outside the checkout: the installed package
        spec = importlib.util.find_spec('mmseg_reclip')  # finds it without importing it
        root = osp.dirname(spec.origin)
    spec = importlib.util.spec_from_file_location('_mmseg_reclip_io',
                                                  osp.join(root, 'utils', 'io.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_IO = _shared_io()
atomic_torch_save, load_error_reason = _IO.atomic_torch_save, _IO.load_error_reason

PREFIX = 'decode_head.'

#: released key -> mmseg-reclip key (without ``decode_head.``)
KEY_MAP = OrderedDict([
    ('text_encoder.prompt_token', 'classifier.bias_extractor.context'),
    ('pe_proj.weight', 'classifier.bias_extractor.pe_proj.weight'),
    ('pe_proj.bias', 'classifier.bias_extractor.pe_proj.bias'),
    ('decoder_conv2.weight', 'classifier.mask_decoder.conv.weight'),
    ('decoder_conv2.bias', 'classifier.mask_decoder.conv.bias'),
    ('decoder_norm2.weight', 'classifier.mask_decoder.norm.weight'),
    ('decoder_norm2.bias', 'classifier.mask_decoder.norm.bias'),
    ('decoder_norm2.running_mean', 'classifier.mask_decoder.norm.running_mean'),
    ('decoder_norm2.running_var', 'classifier.mask_decoder.norm.running_var'),
    ('decoder_norm2.num_batches_tracked', 'classifier.mask_decoder.norm.num_batches_tracked'),
])

#: keys that may be absent (old PyTorch BatchNorm had no counter); filled with 0.
OPTIONAL_KEYS = ('decoder_norm2.num_batches_tracked', )

#: Name fragments of the frozen CLIP weights a released file may also hold.
_CLIP_FRAGMENTS = ('clip', 'visual.', 'image_encoder.', 'backbone.', 'transformer.', 'resblocks.',
                   'token_embedding', 'positional_embedding', 'ln_final', 'text_projection',
                   'logit_scale', 'class_embedding', 'ln_pre', 'ln_post')

#: Keys under which training scripts nest the weights.
_NEST_KEYS = ('state_dict', 'model', 'model_state_dict', 'net')


class ConversionError(RuntimeError):
    """A released checkpoint that cannot be converted (message says why)."""


def load_released(path: str) -> dict:
    """``torch.load`` a released file on CPU with ``weights_only=True``.

    A file that needs more than tensors and containers (e.g. a pickled argparse
    namespace) could run code when unpickled: it is refused. The authors' released
    files are plain state dicts, which load this way.

    Args:
        path (str): the released checkpoint.
    """
    if not osp.isfile(path):
        raise ConversionError(f'source checkpoint not found: {osp.abspath(path)!r}')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        raise ConversionError(
            f'{path} holds non-tensor objects ({load_error_reason(err)}); '
            'unpickling them could run code, so it is refused. If you trust the file, '
            "re-save its tensors alone (torch.save(ckpt['state_dict'], PATH)) and convert "
            'that.') from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as err:
        if isinstance(err, (PermissionError, IsADirectoryError)):
            raise ConversionError(f'{path}: {err}') from None
        raise ConversionError(
            f'{path} is truncated or not a torch checkpoint ({load_error_reason(err)}); '
            'download it again and check its size/checksum.') from None


def extract_state_dict(obj) -> Dict[str, torch.Tensor]:
    """The tensor dict of a checkpoint: unwrap ``state_dict``/``model`` nesting and strip
    ``module.`` prefixes."""
    for _ in range(4):
        if not isinstance(obj, Mapping):
            break
        nested = next((k for k in _NEST_KEYS if isinstance(obj.get(k), Mapping)), None)
        if nested is None:
            break
        obj = obj[nested]
    if not isinstance(obj, Mapping):
        raise ConversionError(f'expected a dict of tensors, got {type(obj).__name__}')
    out = OrderedDict()
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        key = str(key)
        while key.startswith('module.'):
            key = key[len('module.'):]
        if key in out:
            raise ConversionError(f'key {key!r} appears twice once "module." is stripped')
        out[key] = value
    if not out:
        raise ConversionError(f'no tensor found in the checkpoint (top-level keys: '
                              f'{sorted(map(str, obj))})')
    return out


def is_frozen_clip_key(key: str) -> bool:
    return any(fragment in key for fragment in _CLIP_FRAGMENTS) and key not in KEY_MAP


def _describe_found(keys: List[str]) -> str:
    own = [k for k in keys if not is_frozen_clip_key(k)]
    frozen = len(keys) - len(own)
    text = ', '.join(own) if own else '(none)'
    if frozen:
        text += f' (+ {frozen} frozen CLIP keys)'
    return text


def check_missing(state: Mapping[str, torch.Tensor], src: str) -> None:
    missing = [k for k in KEY_MAP if k not in state and k not in OPTIONAL_KEYS]
    if not missing:
        return
    keys = list(state)
    lines = [
        f'{src} is not a released ReCLIP++ rectification checkpoint: missing keys '
        f'{missing}.', f'Found keys: {_describe_found(keys)}.'
    ]
    for key in missing:
        close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
        if close:
            lines.append(f'  {key!r}: close found keys {close}')
    if any(k.startswith(PREFIX) for k in keys):
        lines.append('Keys start with "decode_head.": the file looks already converted; '
                     'load it directly.')
    raise ConversionError('\n'.join(lines))


def _shape(t: torch.Tensor) -> List[int]:
    return list(t.shape)


def convert_state_dict(state: Mapping[str, torch.Tensor],
                       num_classes: Optional[int] = None,
                       num_context: Optional[int] = None,
                       src: str = 'source') -> Tuple['OrderedDict[str, torch.Tensor]', dict]:
    """Map released keys to ``decode_head.*`` and check every shape.

    Returns:
        tuple: the converted state dict and a summary dict (``num_classes``,
        ``num_context``, ``text_width``, ``feat_dim``, ``pe_dim``, ``ignored_keys``).
    """
    check_missing(state, src)
    ctx = state['text_encoder.prompt_token']
    if ctx.ndim == 3 and ctx.shape[0] == 1:
        ctx = ctx[0]
    if ctx.ndim != 2:
        raise ConversionError(f'text_encoder.prompt_token: expected [M, W] or [1, M, W], '
                              f'got {_shape(state["text_encoder.prompt_token"])}')
    pe_w = state['pe_proj.weight']
    if pe_w.ndim == 2:
        pe_w = pe_w[:, :, None, None]
    if pe_w.ndim != 4 or pe_w.shape[-2:] != (1, 1):
        raise ConversionError('pe_proj.weight: expected a [D, W_img] linear or a [D, W_img, '
                              f'1, 1] conv weight, got {_shape(state["pe_proj.weight"])}')
    feat_dim, pe_dim = pe_w.shape[:2]
    conv_w = state['decoder_conv2.weight']
    if conv_w.ndim != 4:
        raise ConversionError(f'decoder_conv2.weight: expected [C, D + C, k, k], got '
                              f'{_shape(conv_w)}')
    found_classes = conv_w.shape[0]
    if num_classes is not None and num_classes != found_classes:
        raise ConversionError(
            f'--num-classes {num_classes} but the checkpoint has {found_classes} classes '
            f'(decoder_conv2.weight {_shape(conv_w)}): wrong dataset or wrong file?')
    if num_context is not None and num_context != ctx.shape[0]:
        raise ConversionError(f'--num-context {num_context} but the checkpoint has '
                              f'{ctx.shape[0]} context vectors')
    expected = {
        'pe_proj.bias': [feat_dim],
        'decoder_conv2.weight': [found_classes, feat_dim + found_classes] + _shape(conv_w)[2:],
        'decoder_conv2.bias': [found_classes],
    }
    for name in ('weight', 'bias', 'running_mean', 'running_var'):
        expected[f'decoder_norm2.{name}'] = [found_classes]
    for key, shape in expected.items():
        if _shape(state[key]) != shape:
            raise ConversionError(f'{key}: expected shape {shape} (C={found_classes} classes, '
                                  f'D={feat_dim} feature dims from pe_proj), got '
                                  f'{_shape(state[key])}')
    if conv_w.shape[-1] != conv_w.shape[-2] or conv_w.shape[-1] % 2 == 0:
        raise ConversionError(f'decoder_conv2.weight: expected an odd square kernel, got '
                              f'{_shape(conv_w)}')

    tensors = dict(state)
    tensors['text_encoder.prompt_token'] = ctx
    tensors['pe_proj.weight'] = pe_w
    if 'decoder_norm2.num_batches_tracked' not in tensors:
        tensors['decoder_norm2.num_batches_tracked'] = torch.tensor(0, dtype=torch.long)
    out = OrderedDict()
    for src_key, dst_key in KEY_MAP.items():
        t = tensors[src_key].detach()
        t = t.float() if t.is_floating_point() else t.long()
        # clone: never save the storage of a larger tensor this one is a view of
        out[PREFIX + dst_key] = t.contiguous().clone()
    ignored = [k for k in state if k not in KEY_MAP]
    info = dict(
        num_classes=int(found_classes),
        num_context=int(ctx.shape[0]),
        text_width=int(ctx.shape[1]),
        feat_dim=int(feat_dim),
        pe_dim=int(pe_dim),
        decoder_kernel=int(conv_w.shape[-1]),
        ignored_frozen_clip_keys=[k for k in ignored if is_frozen_clip_key(k)],
        ignored_other_keys=[k for k in ignored if not is_frozen_clip_key(k)])
    return out, info


def convert(src: str,
            dst: str,
            num_classes: Optional[int] = None,
            num_context: Optional[int] = None) -> dict:
    """Convert ``src`` (released) into ``dst`` (mmengine checkpoint); returns the summary.

    ``src`` is loaded with ``weights_only=True`` only (see :func:`load_released`).
    """
    if osp.abspath(src) == osp.abspath(dst):
        raise ConversionError('DST must differ from SRC (the source file is kept)')
    state = extract_state_dict(load_released(src))
    state_dict, info = convert_state_dict(state, num_classes, num_context, src)
    meta = dict(
        source=osp.abspath(src),
        source_format='released ReCLIP++ rectification checkpoint',
        converted_by='tools/model_converters/reclip_released_to_mmseg.py',
        torch_version=str(torch.__version__),
        **{
            k: v
            for k, v in info.items() if not k.startswith('ignored')
        },
        num_ignored_keys=len(info['ignored_frozen_clip_keys']) + len(info['ignored_other_keys']))
    atomic_torch_save(dict(meta=meta, state_dict=state_dict), dst)
    return info


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert a released ReCLIP++ rectification checkpoint to mmseg-reclip.')
    parser.add_argument('src', help='released checkpoint (.pth)')
    parser.add_argument('dst', help='output mmengine checkpoint (.pth)')
    parser.add_argument(
        '--num-classes',
        type=int,
        default=None,
        help='expected number of classes (VOC 20, Context 59, ADE 150, '
        'Cityscapes 19, COCO-Stuff 27); checked against the checkpoint')
    parser.add_argument(
        '--num-context',
        type=int,
        default=None,
        help='expected number of context vectors (released: 73)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        info = convert(args.src, args.dst, args.num_classes, args.num_context)
    except ConversionError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    print(f'classes: {info["num_classes"]}, context vectors: {info["num_context"]} x '
          f'{info["text_width"]}, PE projection {info["pe_dim"]} -> {info["feat_dim"]}, '
          f'decoder kernel {info["decoder_kernel"]}')
    frozen, other = info['ignored_frozen_clip_keys'], info['ignored_other_keys']
    if frozen:
        print(f'ignored {len(frozen)} frozen CLIP keys (rebuilt from the config\'s '
              f'`pretrained`), e.g. {frozen[:3]}')
    if other:
        print(f'warning: ignored {len(other)} unrecognised keys: {other}')
    print(f'saved {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
