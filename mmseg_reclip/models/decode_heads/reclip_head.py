"""ReCLIP++ head: the frozen queries and the rectified classifier (bias, mask decoder)."""
from typing import Tuple

import torch
import torch.nn as nn
from mmseg.registry import MODELS
from mmseg.utils import SampleList

from ...crop_vote.hypothesis import hypothesis_multi_hot
from .bias_extractor import ReferenceBiasExtractor  # noqa: F401 (registers it)
from .mask_decoder import RectifiedMaskDecoder  # noqa: F401 (registers it)
from .maskclip_head import MaskCLIPHead
from .rectified_classifier import RectifiedClassifier


@MODELS.register_module()
class ReCLIPHead(MaskCLIPHead):
    """ReCLIP++ rectification head (docs/method.md §3-§6).

    Consumes 512-d features aligned with the queries (``inputs[0]``, ``[B, D, h, w]``) —
    from the frozen CLIP backbone — and predicts rectified class logits with its
    :class:`RectifiedClassifier` (``classifier``)::

        forward(): O = classifier(F)   (Lq = F·Qᵀ, B, Lr = rectify(Lq, B), O = decoder(F, Lr))
        loss():    forward() -> sample_masks(O) -> loss_decode

    The bias extractor and the mask decoder are registered modules built from
    ``bias_extractor`` / ``mask_decoder`` configs (either can be swapped, see
    :class:`RectifiedClassifier` for their contract); the distillation student holds a
    frozen copy of the same classifier. Trainable: the extractor's context vectors and
    PE projection, the decoder conv + BN. The CLIP text tower and ``Q`` are frozen.

    Args:
        bias_extractor (dict): config of the bias extractor
            (:class:`ReferenceBiasExtractor`: ``num_context``, ``ctx_init``,
            ``ref_norm``, ``name_token_mode``); ``num_classes``, ``embed_dim``
            (``channels``), ``text_encoder`` and ``class_names`` are filled in. A
            missing ``type`` means ``ReferenceBiasExtractor``.
        mask_decoder (dict): config of the mask decoder
            (:class:`RectifiedMaskDecoder`: ``kernel_size``, ``gumbel_scale``,
            ``gumbel_tau``, ``noise_seed``); ``in_channels`` (``channels``),
            ``num_classes`` and ``norm_cfg`` (the head's) are filled in. A missing
            ``type`` means ``RectifiedMaskDecoder``.
        bias_mode (str): ``'subtract'`` (paper), ``'add'`` or ``'none'`` (ablations).
        norm_cfg (dict): decoder norm (``BN``; ``SyncBN`` on GPUs).
        loss_decode (dict): the stage-1 loss (``ReCLIPContrastiveLoss``).
        Other arguments: see :class:`MaskCLIPHead`.

    Shapes:
        ``forward``: ``inputs[0]`` ``[B, D, h, w]`` → decoder output ``[B, C, h, w]``.
    """

    def __init__(self,
                 bias_extractor: dict = dict(type='ReferenceBiasExtractor'),
                 mask_decoder: dict = dict(type='RectifiedMaskDecoder'),
                 bias_mode: str = 'subtract',
                 norm_cfg: dict = dict(type='BN'),
                 loss_decode: dict = dict(type='ReCLIPContrastiveLoss'),
                 **kwargs):
        super().__init__(norm_cfg=norm_cfg, loss_decode=loss_decode, **kwargs)
        self.classifier = RectifiedClassifier(
            self.query_logits,
            self.num_classes,
            self.channels,
            bias_extractor=bias_extractor,
            mask_decoder=mask_decoder,
            bias_mode=bias_mode,
            norm_cfg=norm_cfg,
            text_encoder=self.text_encoder,
            class_names=self.class_names)

    @property
    def bias_extractor(self) -> nn.Module:
        return self.classifier.bias_extractor

    @property
    def mask_decoder(self) -> nn.Module:
        return self.classifier.mask_decoder

    @property
    def bias_mode(self) -> str:
        return self.classifier.bias_mode

    def init_weights(self) -> None:
        # mmengine's default init would overwrite the method's initialisation.
        self.classifier.init_weights()
        self.queries()

    def forward(self, inputs: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.classifier(self.forward_features(inputs))

    def sample_masks(self, logits: torch.Tensor) -> torch.Tensor:
        """Hard masks ``[B, C, h, w]`` of the decoder output (the classifier's)."""
        return self.classifier.sample_masks(logits)

    def loss(self, inputs: Tuple[torch.Tensor, ...], batch_data_samples: SampleList,
             train_cfg: dict) -> dict:
        """Stage-1 loss: images, their crop-vote hypotheses, no ground truth."""
        feats = self.forward_features(inputs)
        masks = self.sample_masks(self.forward(inputs))
        hypothesis = hypothesis_multi_hot(batch_data_samples, self.num_classes, feats.device)
        loss = self.loss_decode(feats, masks, self.queries(), hypothesis, self.name_map)
        return {self.loss_decode.loss_name: loss}
