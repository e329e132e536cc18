"""The one place that reads the bias tensors out of a model (for the bias report).

:func:`compute_bias_maps` runs the head's own :class:`RectifiedClassifier` (its
``intermediates``) and the segmentor's own way from grid logits to the prediction
(``seg_logits_from_grid`` and prompt denoising), so the maps are those of the model.
"""
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from mmseg_reclip.models.segmentors.maskclip import NO_PADDING


def head_kind(head: nn.Module) -> str:
    """``'student'`` (a classifier without CLIP: :class:`ReCLIPStudentHead`),
    ``'reclip'`` (a classifier, :class:`ReCLIPHead`) or ``'query'`` (query logits only,
    :class:`MaskCLIPHead`); for the bias report's messages."""
    if not hasattr(head, 'query_logits'):
        raise TypeError(f'{type(head).__name__} has no query logits: the bias report needs a '
                        'MaskCLIPHead, ReCLIPHead or ReCLIPStudentHead.')
    if getattr(head, 'classifier', None) is None:
        return 'query'
    return 'student' if hasattr(head, 'inherited') else 'reclip'


@torch.no_grad()
def bias_map(head: nn.Module, size: Tuple[int, int]) -> Optional[torch.Tensor]:
    """Bias logits ``B`` ``[C, h, w]`` of a trained head alone (no image, no dataset);
    ``None`` for a head without a classifier (MaskCLIP) and for an image-dependent bias
    extractor (``image_dependent = True``, e.g. the conference ReCLIP's
    :class:`CoupledBiasExtractor`: its ``B`` exists only for an image, see
    :func:`compute_bias_maps`)."""
    classifier = getattr(head, 'classifier', None)
    if classifier is None or getattr(classifier.bias_extractor, 'image_dependent', False):
        return None
    return classifier.bias_extractor(tuple(size))


@torch.no_grad()
def compute_bias_maps(model: nn.Module,
                      inputs: torch.Tensor,
                      padding: Sequence[int] = NO_PADDING) -> Dict[str, torch.Tensor]:
    """The tensors of the paper's Fig. 4 for a batch, exactly as the model computes them.

    Whole-image inference (one forward pass over the whole input).

    Args:
        model (nn.Module): a :class:`MaskCLIP`, :class:`ReCLIP` or
            :class:`ReCLIPDistiller` segmentor in eval mode.
        inputs (Tensor): ``[N, 3, H, W]`` normalised images (the data preprocessor's
            output).
        padding (Sequence[int]): ``(left, right, top, bottom)`` batch padding of the data
            preprocessor inside ``inputs`` (its ``padding_size`` meta key), as the
            segmentor's whole-image inference reads it.

    Returns:
        dict: ``Lq`` ``[N, C, h, w]`` query logits; for heads with a classifier also
        ``B`` (``[C, h, w]``, or ``[N, C, h, w]`` for an image-dependent bias), ``Lr``
        ``[N, C, h, w]`` rectified logits and ``logits`` ``[N, C, h, w]`` the decoder
        output ``O``; always ``masks`` ``[N, H, W]`` (long): the predicted classes at
        input size (the segmentor's own upsampling and prompt denoising).
    """
    head = model.decode_head
    feats = head.forward_features(model.extract_feat(inputs))
    classifier = getattr(head, 'classifier', None)
    if classifier is None:
        out = dict(Lq=head.query_logits(feats))
        logits = out['Lq']
    else:
        maps = classifier.intermediates(feats)
        logits = maps['O']
        if getattr(head, 'inherit', None) == ():
            # the Table IX "Ori. head" student predicts with its own conv_seg (§11.8)
            logits = head.classify(feats)
        out = dict(Lq=maps['Lq'], B=maps['B'], Lr=maps['Lr'], logits=logits)
    seg = model.seg_logits_from_grid(logits, inputs.shape[-2:], padding)
    out['masks'] = model.denoise(seg, 'upsampled').argmax(dim=1)
    return out
