"""The one place that reads the bias tensors out of a model (for the bias report).

:func:`compute_bias_maps` calls the heads' ``query_logits``, their two modules
(``bias_extractor``: ``B``; ``mask_decoder``: ``O``) and
:func:`~mmseg_reclip.models.decode_heads.reclip_head.rectify`, and the segmentor's
prompt denoising (:class:`~mmseg_reclip.models.segmentors.PromptDenoiseMixin`).
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

from mmseg_reclip.models.decode_heads.reclip_head import rectify
from mmseg_reclip.models.segmentors.maskclip import logits_to_input_size
from mmseg_reclip.models.segmentors.prompt_denoise import prompt_denoise


def head_kind(head: nn.Module) -> str:
    """``'student'`` (:class:`ReCLIPStudentHead`), ``'reclip'`` (a head with a bias
    extractor, :class:`ReCLIPHead`) or ``'query'`` (query logits only, MaskCLIP)."""
    if hasattr(head, 'forward_features') and hasattr(head, 'bias_extractor'):
        return 'student'
    if hasattr(head, 'bias_extractor') and hasattr(head, 'mask_decoder'):
        return 'reclip'
    if hasattr(head, 'query_logits'):
        return 'query'
    raise TypeError(f'{type(head).__name__} has no query logits: the bias report needs a '
                    'MaskCLIPHead, ReCLIPHead or ReCLIPStudentHead.')


@torch.no_grad()
def bias_map(head: nn.Module, size: Tuple[int, int]) -> Optional[torch.Tensor]:
    """Bias logits ``B`` ``[C, h, w]`` of a trained head alone (no image, no dataset);
    ``None`` for a head without a bias extractor (MaskCLIP)."""
    if head_kind(head) == 'query':
        return None
    return head.bias_extractor(tuple(size))


@torch.no_grad()
def compute_bias_maps(model: nn.Module, inputs: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The tensors of the paper's Fig. 4 for a batch, exactly as the model computes them.

    Whole-image inference (the logits of one forward pass over the whole input).

    Args:
        model (nn.Module): a :class:`MaskCLIP`, :class:`ReCLIP` or
            :class:`ReCLIPDistiller` segmentor in eval mode.
        inputs (Tensor): ``[N, 3, H, W]`` normalised images (the data preprocessor's
            output).

    Returns:
        dict: ``Lq`` ``[N, C, h, w]`` query logits; for heads with a bias extractor also
        ``B`` ``[C, h, w]`` bias logits, ``Lr`` ``[N, C, h, w]`` rectified logits
        (``Lq − B``) and ``logits`` ``[N, C, h, w]`` the decoder output; always
        ``masks`` ``[N, H, W]`` (long): the predicted classes at input size (argmax of
        the head output upsampled as the segmentor does, after its prompt denoising).
    """
    head = model.decode_head
    kind = head_kind(head)
    feats = model.extract_feat(inputs)
    if kind == 'student':
        feats = head.forward_features(feats)
    else:
        feats = feats[0]
    out = dict(Lq=head.query_logits(feats))
    if kind == 'query':
        logits = out['Lq']
    else:
        out['B'] = head.bias_extractor(tuple(feats.shape[-2:]))
        out['Lr'] = rectify(out['Lq'], out['B'], head.bias_mode)
        logits = head.mask_decoder(feats, out['Lr'])
        out['logits'] = logits
    logits = _denoise(model, logits, 'grid')
    seg = logits_to_input_size(logits, inputs.shape[-2:], getattr(model.backbone, 'patch_size',
                                                                  None),
                               getattr(model, 'align_corners', False))
    out['masks'] = _denoise(model, seg, 'upsampled').argmax(dim=1)
    return out


def _denoise(model: nn.Module, logits: torch.Tensor, stage: str) -> torch.Tensor:
    """The segmentor's prompt denoising at ``stage`` (``'grid'``/``'upsampled'``); a
    model without the mixin but with a ``pd_threshold`` denoises the upsampled logits."""
    if hasattr(model, 'denoise'):
        return model.denoise(logits, stage)
    if stage == 'upsampled' and getattr(model, 'pd_threshold', None) is not None:
        return prompt_denoise(logits, model.pd_threshold, getattr(model, 'pd_temperature', 10.0))
    return logits
