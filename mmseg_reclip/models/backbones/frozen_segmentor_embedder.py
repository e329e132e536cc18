"""A trained segmentor, frozen, as a backbone of pixel embeddings (linear probing,
docs/method.md §11.9)."""
import os.path as osp
from typing import Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.registry import DefaultScope
from mmengine.runner.checkpoint import _load_checkpoint, load_state_dict
from mmseg.registry import MODELS

from ..utils import freeze


@MODELS.register_module()
class FrozenSegmentorEmbedder(BaseModule):
    """Pixel embeddings of a trained, frozen model (the linear-probing protocol).

    Builds ``model`` (the ``model`` dict of a stage-1 ReCLIP / MaskCLIP config or of a
    distillation config), loads ``checkpoint`` into it and freezes it (no gradient,
    eval mode, not saved: it is rebuilt from ``checkpoint``). Its embedding of an image:

    - a head with ``forward_features`` (the distilled :class:`ReCLIPStudentHead`):
      ``F_s``, the student's ``D``-d pixel embedding (docs/method.md §7);
    - otherwise the first feature map of ``extract_feat`` (stage 1: CLIP's dense ``F``;
      rectification does not change ``F``, only what classifies it).

    The inner model's own ``init_weights`` never runs (its weights come from
    ``checkpoint``; a distiller would otherwise build its teacher).

    Args:
        model (dict): config of the trained model.
        checkpoint (str): its checkpoint (``iter_*.pth`` of its training run).

    Shapes:
        input ``[B, 3, H, W]`` normalised as the inner model's data preprocessor does →
        ``(E,)`` with ``E`` ``[B, D, h, w]``.
    """

    def __init__(self, model: dict, checkpoint: Optional[str], init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if not checkpoint or ('://' not in checkpoint and not osp.isfile(checkpoint)):
            raise FileNotFoundError(
                f'FrozenSegmentorEmbedder needs the trained model\'s checkpoint, got '
                f'{checkpoint!r}. Train the model first and pass its checkpoint '
                '(linear-probing configs: --cfg-options model.checkpoint=PATH).')
        with DefaultScope.overwrite_default_scope('mmseg'):
            inner = MODELS.build(model)
        state = _load_checkpoint(checkpoint, map_location='cpu')
        state = state.get('state_dict', state)
        # Frozen CLIP weights are not saved (they come from `pretrained`): everything else
        # must be there, or the probe would read a partly random model.
        missing = sorted(
            k for k in set(inner.state_dict()) - set(state) if not k.endswith('_extra_state'))
        if missing:
            raise ValueError(f'Checkpoint {checkpoint!r} lacks {missing[:6]} (of {len(missing)}): '
                             f'it is not a checkpoint of the probed {type(inner).__name__} '
                             'config. Pass the checkpoint its training run wrote.')
        load_state_dict(inner, state, strict=False, logger='current')
        print_log(
            f'Linear probing: frozen {type(inner).__name__} from {checkpoint}', logger='current')
        inner.is_init = True  # loaded: mmengine's init (and a distiller's teacher) skipped
        self.model = freeze(inner, save_weights=False)

    def init_weights(self) -> None:
        pass  # the weights come from `checkpoint`

    @property
    def out_channels(self) -> int:
        """``D`` of the embeddings: the student head's ``embed_dim``, or the CLIP
        backbone's joint dimension (derived from the CLIP model, docs/usage.md)."""
        head = self.model.decode_head
        if hasattr(head, 'forward_features') and hasattr(head, 'embed_dim'):
            return int(head.embed_dim)
        dim = getattr(self.model.backbone, 'embed_dim', None)
        if dim is None:
            raise TypeError(f'Cannot tell the embedding width of {type(self.model).__name__} '
                            f'(its head {type(head).__name__} has no embed_dim and its backbone '
                            f'{type(self.model.backbone).__name__} none): set the probe '
                            "head's in_channels.")
        return int(dim)

    @torch.no_grad()
    def forward(self, img: torch.Tensor) -> Tuple[torch.Tensor]:
        feats = self.model.extract_feat(img)
        head = self.model.decode_head
        if hasattr(head, 'forward_features'):
            return (head.forward_features(feats), )
        return (feats[0], )
