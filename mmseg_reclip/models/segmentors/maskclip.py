"""Training-free MaskCLIP segmentor (frozen CLIP, argmax of F·Qᵀ)."""
import inspect
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS

from ..utils import merge_clip_cfg, shared_clip_models
from ..utils.model_meta import set_model_meta
from .prompt_denoise import PD_MODES, PromptDenoiseMixin, prompt_denoise  # noqa: F401

#: How grid logits reach the input size: ``'padded_crop'`` upsamples to the patch-padded
#: size and crops; ``'released'`` resizes straight to the unpadded size (released code).
UPSAMPLE_MODES = ('padded_crop', 'released')

#: ``(left, right, top, bottom)`` batch padding of an unpadded input.
NO_PADDING = (0, 0, 0, 0)


@MODELS.register_module()
class MaskCLIP(PromptDenoiseMixin, EncoderDecoder):
    """MaskCLIP baseline as an mmseg segmentor (``whole`` and ``slide`` test modes).

    Args:
        clip (dict, optional): the one CLIP of the model, e.g. ``dict(model_name=
            'ViT-B-16', pretrained='openai', quick_gelu=None)``: filled into the backbone
            and ``decode_head.text_encoder`` configs (keys set there win), and built
            once, the backbone taking its image tower and the text encoder its text
            tower (:func:`~mmseg_reclip.models.utils.shared_clip_models`). So
            ``--cfg-options model.clip.pretrained=FILE`` switches every CLIP part.
        pd_threshold (float, optional): prompt-denoising threshold; ``None`` disables it.
        pd_temperature (float): softmax temperature of prompt denoising (10).
        pd_mode (str): where the class peaks are measured. ``'upsampled'`` (default):
            on the logits at the input size, after upsampling and, in ``slide`` mode,
            after merging the windows. ``'grid'``: on the grid-level decoder output
            ``[B, C, h, w]`` before any upsampling, as the released code does
            (``whole`` test mode only).
        pd_fallback (bool): keep the best class when every class falls below the
            threshold (default ``True``). The released code has no fallback
            (``False``): such an image is predicted as class 0 everywhere.
        upsample_mode (str): how the grid logits ``[B, C, h, w]`` reach the input size
            ``(H, W)`` when ``H`` or ``W`` is not a multiple of the patch size (the
            backbone pads its input to ``(h * p, w * p)``). ``'padded_crop'`` (default):
            bilinear to the padded size, then crop, so each logit cell stays on its
            patch. ``'released'``: bilinear (``align_corners=False``) straight to the
            unpadded size, as the released test does; in ``whole`` mode batch padding
            of the data preprocessor is left out of that size and filled with 0 (it is
            cropped off by ``postprocess_result``).
        Other arguments: see :class:`mmseg.models.EncoderDecoder`.

    ``encode_decode`` returns head logits at the input size (``[B, C, H, W]``), so both
    test modes and padding work unchanged. The released pipeline is
    ``pd_mode='grid', pd_fallback=False, upsample_mode='released'``
    (``configs/_base_/models/reclip_vit-b16_released.py``).
    """

    #: Runs without a checkpoint (``'none'``): nothing of it is trained. Subclasses that
    #: train set it False, and ``'none'`` is then refused (``utils/model_meta.py``).
    training_free = True

    def __init__(self,
                 backbone: dict,
                 decode_head: dict,
                 *args,
                 clip: Optional[dict] = None,
                 pd_threshold: Optional[float] = None,
                 pd_temperature: float = 10.0,
                 pd_mode: str = 'upsampled',
                 pd_fallback: bool = True,
                 upsample_mode: str = 'padded_crop',
                 **kwargs):
        if pd_mode not in self.pd_modes:  # before CLIP is built (also checked below)
            raise ValueError(f'pd_mode must be one of {self.pd_modes}, got {pd_mode!r}')
        if upsample_mode not in UPSAMPLE_MODES:
            raise ValueError(
                f'upsample_mode must be one of {UPSAMPLE_MODES}, got {upsample_mode!r}')
        backbone, decode_head = inject_clip_cfg(backbone, decode_head, clip)
        self.clip_cfg = dict(clip) if clip else None
        with shared_clip_models():
            super().__init__(backbone, decode_head, *args, **kwargs)
        # classes + palette for mmseg's APIs (init_model, MMSegInferencer, visualiser)
        set_model_meta(self, self.decode_head.class_names, decode_head.get('class_names'))
        self.init_prompt_denoise(pd_threshold, pd_temperature, pd_mode, pd_fallback)
        self.upsample_mode = upsample_mode

    def loss(self, inputs, data_samples):
        raise RuntimeError(f'{type(self).__name__} is training-free; use tools/test.py '
                           '(no checkpoint needed), or train a ReCLIP config.')

    def grid_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Decoder output on the patch grid: ``[B, 3, H, W]`` -> ``[B, C, h, w]``."""
        return self.decode_head.forward(self.extract_feat(inputs))

    def upsample_logits(self,
                        logits: torch.Tensor,
                        size: Sequence[int],
                        padding: Sequence[int] = NO_PADDING) -> torch.Tensor:
        """Grid logits ``[B, C, h, w]`` -> input-size logits ``[B, C, *size]``.

        Args:
            logits (Tensor): ``[B, C, h, w]``.
            size (tuple): input size ``(H, W)``.
            padding (tuple): ``(left, right, top, bottom)`` batch padding of the data
                preprocessor inside ``size`` (``'released'`` mode leaves it out of the
                resize target).
        """
        if self.upsample_mode == 'padded_crop':
            return logits_to_input_size(logits, size, getattr(self.backbone, 'patch_size', None),
                                        self.align_corners)
        left, right, top, bottom = padding
        out = F.interpolate(
            logits,
            size=(size[0] - top - bottom, size[1] - left - right),
            mode='bilinear',
            align_corners=False)
        if any(padding):
            out = F.pad(out, (left, right, top, bottom))
        return out

    def encode_decode(self, inputs: torch.Tensor, batch_img_metas: List[dict]) -> torch.Tensor:
        return self.upsample_logits(self.grid_logits(inputs), inputs.shape[-2:])

    def seg_logits_from_grid(self,
                             logits: torch.Tensor,
                             size: Sequence[int],
                             padding: Sequence[int] = NO_PADDING) -> torch.Tensor:
        """Grid logits ``[B, C, h, w]`` -> input-size logits ``[B, C, *size]`` of whole-image
        inference: the grid-level prompt denoising, then :meth:`upsample_logits` (also
        the bias report's route, :func:`~mmseg_reclip.evaluation.bias_maps.compute_bias_maps`)."""
        return self.upsample_logits(self.denoise(logits, 'grid'), size, padding)

    def whole_inference(self, inputs: torch.Tensor, batch_img_metas: List[dict]) -> torch.Tensor:
        # Test batches hold one image size (mmseg asserts it), so one padding for all;
        # the keys are those `postprocess_result` crops by.
        meta = batch_img_metas[0]
        padding = meta.get('img_padding_size', meta.get('padding_size')) or (0, 0, 0, 0)
        return self.seg_logits_from_grid(self.grid_logits(inputs), inputs.shape[-2:], padding)


def inject_clip_cfg(backbone: dict, decode_head: dict, clip: Optional[dict]) -> Tuple[dict, dict]:
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
    # A subclass that forwards ``**kwargs`` (e.g. TrainableCLIPViTBackbone) takes its
    # parent's arguments: look up the first class that names its own.
    for cls in getattr(part, '__mro__', (part, )):
        params = inspect.signature(cls).parameters
        if 'model_name' in params and 'pretrained' in params:
            return True
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return False
    return False


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
        return F.interpolate(logits, size=tuple(size), mode='bilinear', align_corners=align_corners)
    grid_h, grid_w = logits.shape[-2:]
    logits = F.interpolate(
        logits,
        size=(grid_h * patch_size[0], grid_w * patch_size[1]),
        mode='bilinear',
        align_corners=align_corners)
    return logits[..., :size[0], :size[1]]
