"""Test-time prompt denoising (docs/method.md §8): one function and the one path both the
CLIP segmentors (:class:`MaskCLIP`, :class:`ReCLIP`) and :class:`ReCLIPDistiller` take."""
from typing import List, Optional

import torch

__all__ = ['PD_MODES', 'prompt_denoise', 'PromptDenoiseMixin']

#: Where prompt denoising measures the class peaks: ``'upsampled'`` on the logits at the
#: input size (after merging slide windows), ``'grid'`` on the grid-level decoder output
#: before any upsampling (the released code; ``whole`` test only).
PD_MODES = ('upsampled', 'grid')


def prompt_denoise(seg_logits: torch.Tensor,
                   threshold: float,
                   temperature: float = 10.0,
                   fill: float = -100.0,
                   fallback: bool = True) -> torch.Tensor:
    """Test-time prompt denoising (docs/method.md §8).

    A class whose spatial max of ``softmax(temperature * logits)`` is below
    ``threshold`` is removed from the image (its logits set to ``fill``).

    Args:
        seg_logits (Tensor): ``[B, C, H, W]`` (grid-level or upsampled logits).
        threshold (float): minimum peak probability a class needs to stay.
        temperature (float): softmax temperature (10).
        fill (float): logit of a removed class (-100).
        fallback (bool): keep the class with the highest peak even when it is below the
            threshold. Without it (the released code) an image where no class passes
            gets ``fill`` everywhere, so its argmax is class 0 everywhere.

    Returns:
        Tensor: ``[B, C, H, W]``.
    """
    probs = (temperature * seg_logits).softmax(dim=1)
    peak = probs.flatten(2).amax(dim=2)  # [B, C]
    keep = peak >= threshold
    if fallback:
        keep = keep | (peak == peak.amax(dim=1, keepdim=True))
    return torch.where(keep[:, :, None, None], seg_logits, seg_logits.new_tensor(fill))


class PromptDenoiseMixin:
    """Prompt denoising for an mmseg ``EncoderDecoder``: put it first among the bases.

    :meth:`inference` applies it to the upsampled (and slide-merged) logits when
    ``pd_mode='upsampled'``; a segmentor supporting ``'grid'`` calls
    ``denoise(logits, 'grid')`` on its grid-level logits (see
    :meth:`MaskCLIP.whole_inference`). The bias report calls the same :meth:`denoise`.
    """

    #: the ``pd_mode`` values this segmentor implements
    pd_modes = PD_MODES

    def init_prompt_denoise(self,
                            pd_threshold: Optional[float] = None,
                            pd_temperature: float = 10.0,
                            pd_mode: str = 'upsampled',
                            pd_fallback: bool = True) -> None:
        """Validate and store the settings (see :class:`MaskCLIP` for their meaning)."""
        if pd_mode not in self.pd_modes:
            raise ValueError(f'pd_mode must be one of {self.pd_modes} for '
                             f'{type(self).__name__}, got {pd_mode!r}')
        self.pd_threshold = pd_threshold
        self.pd_temperature = pd_temperature
        self.pd_mode = pd_mode
        self.pd_fallback = pd_fallback

    def denoise(self, seg_logits: torch.Tensor, stage: str = 'upsampled') -> torch.Tensor:
        """:func:`prompt_denoise` with this segmentor's settings when it is on and
        ``stage`` (``'grid'`` or ``'upsampled'``) is its ``pd_mode``; else unchanged."""
        if self.pd_threshold is None or stage != self.pd_mode:
            return seg_logits
        return prompt_denoise(
            seg_logits, self.pd_threshold, self.pd_temperature, fallback=self.pd_fallback)

    def inference(self, inputs: torch.Tensor, batch_img_metas: List[dict]) -> torch.Tensor:
        slide = self.test_cfg.get('mode', 'whole') == 'slide'
        if self.pd_threshold is not None and self.pd_mode == 'grid' and slide:
            raise ValueError("pd_mode='grid' needs test_cfg.mode='whole' (slide windows "
                             "have no whole-image grid); use pd_mode='upsampled'.")
        return self.denoise(super().inference(inputs, batch_img_metas), 'upsampled')
