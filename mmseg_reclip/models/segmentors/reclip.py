"""ReCLIP++ rectification segmentor (stage 1)."""
import torch
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS

from ..utils import class_max_over_names
from .maskclip import MaskCLIP


@MODELS.register_module()
class ReCLIP(MaskCLIP):
    """Frozen CLIP backbone + :class:`ReCLIPHead`, trained with the contrastive loss.

    Training reads images and the crop-vote hypotheses that
    :class:`CropVoteHypothesisHook` attaches to the data samples; never ground truth.
    Inference: argmax of the rectified decoder output, ``whole`` or ``slide`` mode,
    optional prompt denoising (``pd_threshold``).
    """

    loss = EncoderDecoder.loss

    @torch.no_grad()
    def global_class_scores(self, crops: torch.Tensor) -> torch.Tensor:
        """Cosine scores of CLIP's global image embedding against ``Q`` (crop voting).

        Args:
            crops (Tensor): ``[N, 3, S, S]`` normalised crops at CLIP's input size.

        Returns:
            Tensor: ``[N, C]`` (max over synonyms).
        """
        emb = self.backbone.encode_image(crops)
        head = self.decode_head
        return class_max_over_names(emb @ head.queries().t(), head.name_map,
                                    head.num_classes, dim=-1)
