"""Build frozen open_clip models from a model name and a ``pretrained`` tag or file."""
import difflib
import os
import os.path as osp
import pickle
from typing import Optional

import open_clip
import torch.nn as nn
from mmengine.logging import print_log

_CONFIG_DIR = osp.join(osp.dirname(__file__), 'model_configs')
_WEIGHT_SUFFIXES = ('.pt', '.pth', '.bin', '.safetensors', '.ckpt', '.npz')


def register_model_configs() -> None:
    """Make the plugin's extra open_clip configs (tiny test models) visible by name.

    ``ViT-Tiny-16-test`` is a 2-layer, 64-wide ViT/16 + text tower with the real CLIP
    tokenizer: the same code paths as ViT-B-16 at a fraction of the cost (tests, smoke runs).
    """
    if 'ViT-Tiny-16-test' not in open_clip.list_models():
        open_clip.add_model_config(_CONFIG_DIR)


def _looks_like_path(pretrained: str) -> bool:
    return (os.sep in pretrained or pretrained.startswith('.')
            or pretrained.endswith(_WEIGHT_SUFFIXES))


def check_model_name(model_name: str) -> None:
    """Raise a helpful error for a model name open_clip does not know."""
    register_model_configs()
    if model_name.startswith(('hf-hub:', 'local-dir:')):
        return
    known = open_clip.list_models()
    if model_name.replace('/', '-') not in known:
        close = difflib.get_close_matches(model_name, known, n=6, cutoff=0.5)
        raise ValueError(
            f'Unknown open_clip model name {model_name!r}. Close names: {close}. '
            "For OpenAI's CLIP ViT-B/16 use 'ViT-B-16' with pretrained='openai' "
            "(or 'ViT-B-16-quickgelu' with a local weights file). "
            'All names: open_clip.list_models().')


def check_pretrained(model_name: str, pretrained: Optional[str]) -> None:
    """Raise a helpful error for a missing weights file or an unknown tag."""
    if not pretrained:
        return
    if osp.isfile(pretrained):
        return
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if pretrained in tags:
        return
    if _looks_like_path(pretrained):
        raise FileNotFoundError(
            f'CLIP weights file not found: {osp.abspath(pretrained)!r}. Download the '
            f'weights on a machine with internet, e.g. `python -c "import open_clip; '
            f"open_clip.create_model('{model_name}', pretrained='openai')\"` (they land in "
            "~/.cache/huggingface or ~/.cache/clip), copy the file here and point "
            '`pretrained` at it, or use an open_clip tag '
            f'({tags or "none known for this model"}).')
    raise ValueError(f'Unknown pretrained tag {pretrained!r} for {model_name!r}. Known tags: '
                     f'{tags}; or give the path of a local weights file.')


def create_clip(model_name: str,
                pretrained: Optional[str] = None,
                ln_eps: Optional[float] = None) -> nn.Module:
    """Create an open_clip CLIP model in eval mode with gradients off.

    Args:
        model_name (str): open_clip model name, e.g. ``'ViT-B-16'``.
        pretrained (str, optional): open_clip pretrained tag (``'openai'``; downloads where
            there is internet) or a local weights file (an open_clip/OpenAI state dict).
            ``None`` keeps random weights (a warning says so: only for tests).
        ln_eps (float, optional): override the eps of every transformer-block LayerNorm
            (the released ReCLIP++ code forces 1e-6; CLIP uses 1e-5).

    Returns:
        nn.Module: the open_clip model.
    """
    check_model_name(model_name)
    check_pretrained(model_name, pretrained)
    force_quick_gelu = False
    if pretrained and not osp.isfile(pretrained):
        tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
        # OpenAI weights were trained with QuickGELU; plain 'ViT-B-16' would use nn.GELU.
        force_quick_gelu = bool(tag_cfg.get('quick_gelu', False))
    if not pretrained:
        print_log(f'CLIP {model_name}: no `pretrained` given, using RANDOM weights. '
                  'Predictions are meaningless.', logger='current', level=30)
    try:
        model = open_clip.create_model(
            model_name, pretrained=pretrained or None, force_quick_gelu=force_quick_gelu,
            pretrained_text=False)
    except (RuntimeError, OSError, EOFError, AssertionError, KeyError, ValueError,
            pickle.UnpicklingError) as err:
        if not (pretrained and osp.isfile(pretrained)):
            raise
        raise ValueError(weights_error_message(model_name, pretrained, err)) from err
    if ln_eps is not None:
        set_block_layernorm_eps(model, ln_eps)
    model.eval()
    model.requires_grad_(False)
    return model


def weights_error_message(model_name: str, path: str, err: BaseException) -> str:
    """One line naming the weights file, what went wrong and what to do."""
    reason = (str(err).strip().splitlines() or [''])[0].split('. ')[0][:200].rstrip('.')
    reason = reason or 'unexpected end of file'
    unreadable = isinstance(err, (OSError, EOFError, pickle.UnpicklingError)) or any(
        s in reason for s in ('PytorchStreamReader', 'zip archive', 'storage', 'corrupt'))
    where = f'CLIP weights file {osp.abspath(path)!r} ({osp.getsize(path)} bytes)'
    if unreadable:
        return (f'Cannot read the {where}: {type(err).__name__}: {reason}. The file is '
                'truncated or not a weights file: download or copy it again.')
    return (f'The {where} does not fit open_clip model {model_name!r} '
            f'({type(err).__name__}: {reason}). It holds another architecture: set '
            '`model_name` to the model the file was saved from (e.g. ViT-B-16 for OpenAI '
            'ViT-B/16), or point `pretrained` at weights of this model.')


def set_block_layernorm_eps(model: nn.Module, eps: float) -> None:
    """Set eps of ``ln_1``/``ln_2`` in every residual block (both towers)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.LayerNorm) and name.rsplit('.', 1)[-1] in ('ln_1', 'ln_2'):
            module.eps = eps
