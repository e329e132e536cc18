"""Training-free MaskCLIP segmentor (frozen CLIP, argmax of F·Qᵀ)."""
import inspect
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS

from ..utils import merge_clip_cfg, shared_clip_models
from ..utils.model_meta import set_model_meta


def prompt_denoise(seg_logits: torch.Tensor, threshold: float,
                   temperature: float = 10.0, fill: float = -100.0) -> torch.Tensor:
    """Test-time prompt denoising (method §8).

    A class whose spatial max of ``softmax(temperature * logits)`` is below
    ``threshold`` is removed from the image (its logits set to ``fill``); the class with
    the highest spatial max is always kept.

    Args:
        seg_logits (Tensor): ``[B, C, H, W]``.

    Returns:
        Tensor: ``[B, C, H, W]``.
    """
    probs = (temperature * seg_logits).softmax(dim=1)
    peak = probs.flatten(2).amax(dim=2)  # [B, C]
    # The class with the highest peak always stays: removing every class would make the
    # argmax class 0 everywhere (with threshold 1.0 and unsaturated probabilities).
    keep = (peak >= threshold) | (peak == peak.amax(dim=1, keepdim=True))
    return torch.where(keep[:, :, None, None], seg_logits, seg_logits.new_tensor(fill))


@MODELS.register_module()
class MaskCLIP(EncoderDecoder):
    """MaskCLIP baseline as an mmseg segmentor (``whole`` and ``slide`` test modes).

    Args:
        clip (dict, optional): the one CLIP of the model, e.g. ``dict(model_name=
            'ViT-B-16', pretrained='openai', quick_gelu=True)``: filled into the backbone
            and ``decode_head.text_encoder`` configs (keys set there win), and built
            once, the backbone taking its image tower and the text encoder its text
            tower (:func:`~mmseg_reclip.models.utils.shared_clip_models`). So
            ``--cfg-options model.clip.pretrained=FILE`` switches every CLIP part.
        pd_threshold (float, optional): prompt-denoising threshold; ``None`` disables it.
        pd_temperature (float): softmax temperature of prompt denoising (10).
        Other arguments: see :class:`mmseg.models.EncoderDecoder`.

    ``encode_decode`` returns head logits upsampled bilinearly to the input size
    (``[B, C, H, W]``), so both test modes and padding work unchanged.
    """

    def __init__(self,
                 backbone: dict,
                 decode_head: dict,
                 *args,
                 clip: Optional[dict] = None,
                 pd_threshold: Optional[float] = None,
                 pd_temperature: float = 10.0,
                 **kwargs):
        backbone, decode_head = inject_clip_cfg(backbone, decode_head, clip)
        self.clip_cfg = dict(clip) if clip else None
        with shared_clip_models():
            super().__init__(backbone, decode_head, *args, **kwargs)
        # classes + palette for mmseg's APIs (init_model, MMSegInferencer, visualiser)
        set_model_meta(self, self.decode_head.class_names, decode_head.get('class_names'))
        self.pd_threshold = pd_threshold
        self.pd_temperature = pd_temperature

    def loss(self, inputs, data_samples):
        raise RuntimeError(f'{type(self).__name__} is training-free; use tools/test.py '
                           '(no checkpoint needed), or train a ReCLIP config.')

    def encode_decode(self, inputs: torch.Tensor, batch_img_metas: List[dict]) -> torch.Tensor:
        x = self.extract_feat(inputs)
        logits = self.decode_head.forward(x)
        return logits_to_input_size(logits, inputs.shape[-2:],
                                    getattr(self.backbone, 'patch_size', None), self.align_corners)

    def inference(self, inputs: torch.Tensor, batch_img_metas: List[dict]) -> torch.Tensor:
        seg_logits = super().inference(inputs, batch_img_metas)
        if self.pd_threshold is not None:
            seg_logits = prompt_denoise(seg_logits, self.pd_threshold, self.pd_temperature)
        return seg_logits


def inject_clip_cfg(backbone: dict, decode_head: dict,
                    clip: Optional[dict]) -> Tuple[dict, dict]:
    """Fill the model-level ``clip`` keys into the CLIP backbone and the head's text
    encoder (copies; keys already set on a part win)."""
    if not clip:
        return backbone, decode_head
    if isinstance(backbone, dict) and _is_clip_part(backbone):
        backbone = merge_clip_cfg(backbone, clip)
    if isinstance(decode_head, dict) and isinstance(decode_head.get('text_encoder'), dict):
        decode_head = decode_head.copy()
        decode_head['text_encoder'] = merge_clip_cfg(decode_head['text_encoder'], clip)
    return backbone, decode_head


def _is_clip_part(cfg: dict) -> bool:
    """Whether a config builds a CLIP part (a class taking ``model_name``/``pretrained``)."""
    part = cfg.get('type')
    if isinstance(part, str):
        part = MODELS.get(part)
    if part is None:
        return False
    params = inspect.signature(part).parameters
    return 'model_name' in params and 'pretrained' in params


def logits_to_input_size(logits: torch.Tensor,
                         size: tuple,
                         patch_size: Optional[tuple] = None,
                         align_corners: bool = False) -> torch.Tensor:
    """Upsample grid logits ``[B, C, h, w]`` bilinearly to the input ``size``.

    A ViT backbone pads its input on the bottom/right to a multiple of ``patch_size``,
    so each logit cell covers one patch of the padded image: upsample to the padded size
    and crop. Without ``patch_size`` the logits are resized to ``size`` directly.
    """
    if patch_size is None:
        return F.interpolate(logits, size=tuple(size), mode='bilinear',
                             align_corners=align_corners)
    grid_h, grid_w = logits.shape[-2:]
    logits = F.interpolate(logits, size=(grid_h * patch_size[0], grid_w * patch_size[1]),
                           mode='bilinear', align_corners=align_corners)
    return logits[..., :size[0], :size[1]]
