"""ReCLIP++ rectification segmentor (stage 1)."""
import torch
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS

from ...crop_vote.vote import global_class_scores
from .maskclip import MaskCLIP


@MODELS.register_module()
class ReCLIP(MaskCLIP):
    """Frozen CLIP backbone + :class:`ReCLIPHead`, trained with the contrastive loss.

    Training reads images and the crop-vote hypotheses that
    :class:`CropVoteHypothesisHook` attaches to the data samples; never ground truth.
    Inference: argmax of the rectified decoder output, ``whole`` or ``slide`` mode,
    optional prompt denoising (``pd_threshold``).

    Args:
        pd_threshold, pd_temperature, pd_mode, pd_fallback, upsample_mode: test-time
            options, see :class:`MaskCLIP`. Our configs keep the defaults
            (``pd_mode='upsampled'``, ``pd_fallback=True``,
            ``upsample_mode='padded_crop'``); the ``*_released_*`` configs set
            ``'grid'``, ``False``, ``'released'`` to reproduce the released test.
        Other arguments: see :class:`mmseg.models.EncoderDecoder`.
    """

    loss = EncoderDecoder.loss
    training_free = False  # its decoder is trained: 'none' is refused

    def global_class_scores(self, crops: torch.Tensor) -> torch.Tensor:
        """``[N, C]`` crop-vote scores of ``[N, 3, S, S]`` normalised crops, see
        :func:`~mmseg_reclip.crop_vote.vote.global_class_scores`."""
        return global_class_scores(self.backbone, self.decode_head, crops)
