"""Every number a CLIP-based part needs, read from the CLIP model, in one place.

:func:`clip_dims` reads them from an open_clip model config (by name, without building
the model) or from a built open_clip model; the backbone, the heads, the distillation
student and the crop-vote hook take their dimensions from it instead of config numbers.
"""
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple, Union

import open_clip
import torch.nn as nn

from .clip_loader import check_model_name

#: The CLIP models whose dense features this plugin computes (OpenAI layout: a plain
#: ViT image tower with a CLS token, a causal text tower with CLIP's BPE tokenizer).
SUPPORTED_MODELS = ('ViT-B-32', 'ViT-B-16', 'ViT-L-14', 'ViT-L-14-336', 'ViT-H-14')

# open_clip config keys of towers the dense-feature trick cannot serve (value: why).
_UNSUPPORTED_VISION = {
    'timm_model_name': 'a timm image tower',
    'attentional_pool': 'an attention-pooled image tower',
    'no_ln_pre': 'an image tower without ln_pre',
    'final_ln_after_pool': 'an image tower normalised after pooling',
    'block_type': 'a non-standard image block',
    'qk_norm': 'normalised q/k',
    'scaled_cosine_attn': 'cosine attention',
    'scale_attn': 'scaled attention',
    'scale_attn_inner': 'scaled attention',
    'scale_heads': 'scaled heads',
}
_UNSUPPORTED_TEXT = {
    'hf_model_name': 'a Hugging Face text tower',
    'hf_tokenizer_name': "a tokenizer other than CLIP's BPE",
    'no_causal_mask': 'a non-causal (SigLIP-style) text tower',
    'embed_cls': 'a CoCa text tower',
}


class UnsupportedCLIPError(ValueError):
    """An open_clip model whose towers the dense-feature path cannot use."""


@dataclass(frozen=True)
class CLIPDims:
    """The numbers of one CLIP model that the segmentation parts depend on.

    Attributes:
        model_name (str): open_clip model name.
        embed_dim (int): ``D``, the joint image-text space (ViT-B/16: 512).
        image_width (int): width of the image tower = channels of its positional
            embedding (ViT-B/16: 768).
        patch_size (tuple[int, int]): ViT patch size (ViT-B/16: (16, 16)).
        image_size (tuple[int, int]): CLIP's input size (ViT-B/16: (224, 224)).
        pe_grid (tuple[int, int]): positional-embedding grid, ``image_size // patch_size``.
        text_width (int): width of the text tower (context-vector size).
        quick_gelu (bool): QuickGELU activations (the model config's choice; an
            open_clip tag may force it, see :func:`create_clip`).
    """
    model_name: str
    embed_dim: int
    image_width: int
    patch_size: Tuple[int, int]
    image_size: Tuple[int, int]
    pe_grid: Tuple[int, int]
    text_width: int
    quick_gelu: bool


def _pair(value) -> Tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value), int(value))


def check_supported(model_name: str, model_cfg: Mapping) -> None:
    """Raise :class:`UnsupportedCLIPError` when ``model_cfg`` is not of the OpenAI layout."""
    vision, text = model_cfg.get('vision_cfg') or {}, model_cfg.get('text_cfg') or {}
    why = [w for k, w in _UNSUPPORTED_VISION.items() if vision.get(k)]
    why += [w for k, w in _UNSUPPORTED_TEXT.items() if text.get(k)]
    if not isinstance(vision.get('layers'), int) or not vision.get('patch_size'):
        why.append('a ResNet image tower')
    if vision.get('pool_type', 'tok') != 'tok':
        why.append(f"image pooling {vision['pool_type']!r} (needs the CLS token)")
    if text.get('pool_type', 'argmax') != 'argmax':
        why.append(f"text pooling {text['pool_type']!r} (needs the EOT token)")
    if vision.get('pos_embed_type', 'learnable') != 'learnable':
        why.append('a fixed positional embedding')
    if model_cfg.get('custom_text') or model_cfg.get('multimodal_cfg'):
        why.append('a custom / multimodal text tower')
    if why:
        raise UnsupportedCLIPError(
            f'CLIP model {model_name!r} has {", ".join(dict.fromkeys(why))}: the dense '
            'features (value path of the last block) and the text prompts need a plain ViT '
            'image tower with a CLS token and a causal text tower with CLIP\'s tokenizer '
            f'(OpenAI layout). Supported: {", ".join(SUPPORTED_MODELS)} and their '
            '"-quickgelu" variants, with any pretrained tag or local weights file '
            '(OpenAI, LAION, DataComp, MetaCLIP, DFN...).')


def model_config(model_name: str) -> dict:
    """The open_clip config of ``model_name``, checked to be supported."""
    check_model_name(model_name)
    cfg = open_clip.get_model_config(model_name)
    if cfg is None:  # hf-hub: / local-dir: names hold their config elsewhere
        raise UnsupportedCLIPError(
            f'No local open_clip config for {model_name!r}: use an open_clip model name '
            f'({", ".join(SUPPORTED_MODELS)}) with `pretrained` set to the weights file.')
    check_supported(model_name, cfg)
    return cfg


def _dims_from_config(model_name: str) -> CLIPDims:
    cfg = model_config(model_name)
    vision, text = cfg['vision_cfg'], cfg['text_cfg']
    patch, size = _pair(vision['patch_size']), _pair(vision['image_size'])
    return CLIPDims(
        model_name=model_name,
        embed_dim=int(cfg['embed_dim']),
        image_width=int(vision['width']),
        patch_size=patch,
        image_size=size,
        pe_grid=(size[0] // patch[0], size[1] // patch[1]),
        text_width=int(text['width']),
        quick_gelu=bool(cfg.get('quick_gelu', False)))


def _dims_from_model(model: nn.Module) -> CLIPDims:
    visual = getattr(model, 'visual', model)
    if not all(hasattr(visual, a) for a in ('conv1', 'proj', 'positional_embedding')):
        raise UnsupportedCLIPError(
            f'{type(visual).__name__} is not an open_clip VisionTransformer of the OpenAI '
            f'layout. Supported: {", ".join(SUPPORTED_MODELS)}.')
    mlp_act = visual.transformer.resblocks[0].mlp.gelu
    text = getattr(model, 'transformer', None)
    return CLIPDims(
        model_name=type(model).__name__,
        embed_dim=int(visual.proj.shape[1]),
        image_width=int(visual.conv1.out_channels),
        patch_size=_pair(visual.patch_size),
        image_size=_pair(visual.image_size),
        pe_grid=_pair(visual.grid_size),
        text_width=int(text.width) if text is not None else 0,
        quick_gelu=type(mlp_act).__name__ == 'QuickGELU')


def clip_dims(source: Union[str, Mapping, nn.Module]) -> CLIPDims:
    """The dimensions of a CLIP model.

    Args:
        source (str | dict | nn.Module): an open_clip model name, a CLIP part config
            (``dict(model_name=...)``; default ``'ViT-B-16'`` as the CLIP parts), or a
            built open_clip model / its ``visual`` tower.

    Returns:
        CLIPDims: read from the open_clip config (name, dict) without building the model,
        or from the built model's tensors.

    Raises:
        UnsupportedCLIPError: the model is not a ViT of the OpenAI layout.
    """
    if isinstance(source, nn.Module):
        return _dims_from_model(source)
    if isinstance(source, Mapping):
        source = source.get('model_name') or 'ViT-B-16'
    return _dims_from_config(str(source))


def check_dim(where: str, name: str, given, derived, model_name: str) -> None:
    """Raise a :class:`ValueError` naming both values when an explicit config value
    disagrees with the CLIP model (``None`` means "derive it": no error)."""
    if given is None:
        return
    norm = tuple(given) if isinstance(given, (list, tuple)) else given
    if norm != derived:
        raise ValueError(f'{where}: {name}={given!r} in the config but CLIP {model_name!r} has '
                         f'{name}={derived!r}. Remove {name} from the config (it is derived from '
                         'the CLIP model) or choose the CLIP it was written for.')


def fill_student_dims(head_cfg: dict, teacher_clip_cfg: Optional[Mapping]) -> dict:
    """A copy of a distillation student head config with the teacher CLIP's numbers.

    Fills ``embed_dim`` and ``bias_extractor.pe_channels`` / ``pe_grid`` (what the frozen
    inherited parts need) from :func:`clip_dims` of the teacher's CLIP part config, so the
    student builds (and loads its checkpoint) without CLIP weights. Values set in the
    config are kept; one that disagrees with the teacher is refused, naming both, when
    the teacher's parts are inherited
    (:meth:`ReferenceBiasExtractor.inherit`, :meth:`ReCLIPStudentHead.load_from_teacher`).
    """
    if not isinstance(head_cfg, dict) or not teacher_clip_cfg:
        return head_cfg
    dims = clip_dims(teacher_clip_cfg)
    head_cfg = dict(head_cfg)
    head_cfg.setdefault('embed_dim', dims.embed_dim)
    bias = dict(head_cfg.get('bias_extractor') or dict(type='ReferenceBiasExtractor'))
    bias.setdefault('pe_channels', dims.image_width)
    bias.setdefault('pe_grid', dims.pe_grid)
    head_cfg['bias_extractor'] = bias
    return head_cfg


def model_clip_input_size(model: nn.Module) -> int:
    """CLIP's input size (square side) for the global crop scores of ``model``: its
    CLIP backbone's, or its distillation teacher's."""
    for owner in (model, getattr(model, 'teacher', None)):
        backbone = getattr(owner, 'backbone', None)
        dims = getattr(backbone, 'dims', None)
        if dims is not None:
            return int(dims.image_size[0])
    raise TypeError(f'{type(model).__name__} has no CLIP backbone to take the crop input size '
                    'from; set the hook\'s input_size.')
