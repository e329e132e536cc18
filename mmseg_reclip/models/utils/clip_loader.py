"""Build frozen open_clip models from a model name and a ``pretrained`` tag or file."""
import contextlib
import difflib
import logging
import os
import os.path as osp
import pickle
from typing import Dict, Iterator, Optional, Tuple

import open_clip
import torch.nn as nn
from mmengine.logging import print_log

_CONFIG_DIR = osp.join(osp.dirname(__file__), 'model_configs')
_WEIGHT_SUFFIXES = ('.pt', '.pth', '.bin', '.safetensors', '.ckpt', '.npz')
#: Non-weight entries of a state dict taken from OpenAI's TorchScript CLIP archive. The
#: released ReCLIP++ code drops them, open_clip only when it opens the archive itself.
_ARCHIVE_KEYS = ('input_resolution', 'context_length', 'vocab_size')
# The config key that switches CLIP's weights everywhere (see merge_clip_cfg).
CLIP_PRETRAINED_KEY = 'model.clip.pretrained'

# Models created inside `shared_clip_models()`, by (model_name, pretrained, ln_eps).
_shared_models: Optional[Dict[Tuple, nn.Module]] = None


@contextlib.contextmanager
def shared_clip_models() -> Iterator[None]:
    """Within this context, :func:`create_clip` creates each CLIP once.

    The segmentors build their backbone and text encoder inside it, so both take their
    towers from one open_clip model (one load, one copy in memory) when they ask for the
    same ``(model_name, pretrained, ln_eps)``. Nested uses share the outer cache.
    """
    global _shared_models
    outer = _shared_models
    if outer is None:
        _shared_models = {}
    try:
        yield
    finally:
        if outer is None:
            _shared_models = None


def merge_clip_cfg(part_cfg: Optional[dict], clip: Optional[dict]) -> Optional[dict]:
    """Return a copy of a CLIP part's config with the model-level ``clip`` keys filled in.

    Keys set on the part itself (``model_name``, ``pretrained``, ``ln_eps``) win: they
    are per-part overrides of the one ``clip=dict(...)`` entry of the config.
    """
    if part_cfg is None or not clip:
        return part_cfg
    merged = part_cfg.copy()
    for key, value in clip.items():
        merged.setdefault(key, value)
    return merged


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
        raise ValueError(f'Unknown open_clip model name {model_name!r}. Close names: {close}. '
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
                ln_eps: Optional[float] = None,
                quick_gelu: Optional[bool] = None) -> nn.Module:
    """Create an open_clip CLIP model in eval mode with gradients off.

    Args:
        model_name (str): open_clip model name, e.g. ``'ViT-B-16'``.
        pretrained (str, optional): open_clip pretrained tag (``'openai'``; downloads where
            there is internet) or a local weights file (an open_clip/OpenAI state dict,
            fp32 or fp16; the non-weight keys of OpenAI's TorchScript archive are dropped).
            ``None`` keeps random weights (a warning says so: only for tests).
        ln_eps (float, optional): override the eps of every transformer-block LayerNorm
            of the given tower (CLIP uses 1e-5). The released ReCLIP++ code forces 1e-6
            on the image tower only, so only the backbone asks for it.
        quick_gelu (bool, optional): use QuickGELU (OpenAI's CLIP weights need it, also
            when they come from a local file). ``None`` (the configs): what the open_clip
            tag says (``'openai'``: True); for a local file, True when ``model_name`` has
            OpenAI weights (set ``False`` for a file of other weights, e.g. LAION's);
            False without weights.

    Inside :func:`shared_clip_models` a second call with the same arguments returns
    the same model object.

    Returns:
        nn.Module: the open_clip model.
    """
    key = (model_name, pretrained, ln_eps, quick_gelu)
    if _shared_models is not None and key in _shared_models:
        return _shared_models[key]
    check_model_name(model_name)
    check_pretrained(model_name, pretrained)
    force_quick_gelu = resolve_quick_gelu(model_name, pretrained, quick_gelu)
    if not pretrained:
        print_log(
            f'CLIP {model_name}: no `pretrained` given, using RANDOM weights. '
            'Predictions are meaningless.',
            logger='current',
            level=30)
    if pretrained and osp.isfile(pretrained):
        model = _create_from_file(model_name, pretrained, force_quick_gelu)
    else:
        try:
            model = open_clip.create_model(
                model_name,
                pretrained=pretrained or None,
                force_quick_gelu=force_quick_gelu,
                pretrained_text=False)
        except RuntimeError as exc:
            if not (pretrained and 'download' in str(exc)):
                raise
            raise RuntimeError(
                f'Could not download the CLIP weights of open_clip tag {pretrained!r} for '
                f'model {model_name!r} (no network?). On a machine with internet run '
                f'`python -c "import open_clip; open_clip.create_model(\'{model_name}\', '
                f'pretrained=\'{pretrained}\')"` and copy the downloaded file (under '
                '~/.cache/huggingface), then point every CLIP part at it with '
                f'`--cfg-options {CLIP_PRETRAINED_KEY}=/path/to/weights.bin`. '
                f'open_clip said: {exc}') from exc
    if ln_eps is not None:
        set_block_layernorm_eps(model, ln_eps)
    model.eval()
    model.requires_grad_(False)
    if _shared_models is not None:
        _shared_models[key] = model
    return model


def resolve_quick_gelu(model_name: str, pretrained: Optional[str],
                       quick_gelu: Optional[bool]) -> bool:
    """Whether to force QuickGELU: what an open_clip tag was trained with; for a local
    file ``quick_gelu``, or (``None``) whether ``model_name`` has OpenAI weights; without
    weights ``quick_gelu`` (``None``: False). The model config may still ask for it.

    Also refuses a model the dense-feature path cannot serve (see
    :func:`~mmseg_reclip.models.utils.clip_dims.check_supported`).

    Raises:
        ValueError: an explicit ``quick_gelu`` that disagrees with the tag, naming both.
    """
    from .clip_dims import model_config  # clip_dims imports this module
    model_cfg = {} if model_name.startswith(('hf-hub:', 'local-dir:')) else model_config(model_name)
    if not pretrained:
        return bool(quick_gelu)
    if osp.isfile(pretrained):
        if quick_gelu is None:
            # A file does not say how its weights were trained: the configs name
            # OpenAI's weights, so a model that has them is taken to hold them.
            return 'openai' in open_clip.list_pretrained_tags_by_model(model_name)
        return bool(quick_gelu)
    tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    # OpenAI weights were trained with QuickGELU; plain 'ViT-B-16' would use nn.GELU.
    derived = bool(tag_cfg.get('quick_gelu', False) or model_cfg.get('quick_gelu', False))
    if quick_gelu is not None and bool(quick_gelu) != derived:
        raise ValueError(
            f'quick_gelu={quick_gelu} in the config but the open_clip weights '
            f'{model_name!r} / {pretrained!r} were trained with '
            f'{"QuickGELU" if derived else "GELU"} (quick_gelu={derived}). Remove quick_gelu '
            '(e.g. --cfg-options model.clip.quick_gelu=None): for an open_clip tag it is '
            'derived; set it only for a local weights file of non-OpenAI weights (False).')
    return derived


class _DropRandomInitWarning(logging.Filter):
    """Hide open_clip's 'initialized randomly' warning: the weights are loaded next."""

    def filter(self, record: logging.LogRecord) -> bool:
        return 'initialized randomly' not in record.getMessage()


def _create_from_file(model_name: str, path: str, force_quick_gelu: bool) -> nn.Module:
    """Build ``model_name`` and load a local state dict into it.

    Like open_clip's own file route, but a state dict taken from OpenAI's TorchScript
    archive (with its ``input_resolution`` / ``context_length`` / ``vocab_size``
    entries) is accepted and those entries dropped. Half-precision tensors (OpenAI's
    weights are fp16) are copied into the float32 model.
    """
    quiet = _DropRandomInitWarning()
    logging.getLogger().addFilter(quiet)
    try:
        model = open_clip.create_model(
            model_name, pretrained=None, force_quick_gelu=force_quick_gelu, pretrained_text=False)
    finally:
        logging.getLogger().removeFilter(quiet)
    try:
        result = open_clip.load_checkpoint(model, path, strict=False)
    except (RuntimeError, OSError, EOFError, AssertionError, KeyError, ValueError,
            pickle.UnpicklingError) as err:
        raise ValueError(weights_error_message(model_name, path, err)) from err
    unexpected = [k for k in result.unexpected_keys if k not in _ARCHIVE_KEYS]
    if result.missing_keys or unexpected:
        raise RuntimeError(
            f'CLIP weights file {osp.abspath(path)!r} does not match open_clip model '
            f'{model_name!r}: missing keys {result.missing_keys[:5]}'
            f'{"..." if len(result.missing_keys) > 5 else ""}, unexpected keys '
            f'{unexpected[:5]}{"..." if len(unexpected) > 5 else ""}. Check `model_name` '
            "(OpenAI weights: 'ViT-B-16' / 'ViT-B-16-quickgelu') or the file.")
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
    """Set eps of ``ln_1``/``ln_2`` in every residual block under ``model``.

    Pass ``clip.visual`` or ``clip.transformer`` to change one tower only.
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.LayerNorm) and name.rsplit('.', 1)[-1] in ('ln_1', 'ln_2'):
            module.eps = eps
