"""Linear probing of a trained model (paper Table I, docs/method.md §11.9)."""
from typing import Optional

from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS


@MODELS.register_module()
class LinearProbeSegmentor(EncoderDecoder):
    """A frozen trained model's pixel embeddings + a 1x1 linear classifier trained with
    ground-truth labels: the linear-probing *evaluation protocol* of the paper's Table I
    (docs/method.md §11.9). The one model of this repository that reads labels to train;
    its configs live in ``configs/linear_probe/`` only.

    A linear-probing config inherits the trained model's config and adds
    ``type='LinearProbeSegmentor'``, ``trained_type``, ``checkpoint`` and ``probe_head``:
    every other key of ``model`` (``backbone``, ``decode_head``, ``clip``, ...) is the
    trained model's, so the usual ``--cfg-options model.*`` overrides still reach it.
    The trained model becomes the backbone (:class:`FrozenSegmentorEmbedder`: built,
    loaded from ``checkpoint``, frozen); the probe head is the decode head.

    Args:
        trained_type (str): registered type of the trained model (``'ReCLIP'``,
            ``'ReCLIPDistiller'``, ``'MaskCLIP'``).
        checkpoint (str): the trained model's checkpoint.
        probe_head (dict): the linear classifier (:class:`LinearProbeHead`); its
            ``in_channels`` is the embedder's ``out_channels`` (derived from the trained
            model: the student's ``embed_dim`` or CLIP's joint dimension); a different
            value in the config is an error naming both.
        data_preprocessor (dict): shared by the probe and the trained model.
        train_cfg, test_cfg (dict): as :class:`mmseg.models.EncoderDecoder`.
        **trained: the rest of the trained model's config.
    """

    training_free = False  # the probe is trained: 'none' is refused

    def __init__(self,
                 trained_type: str,
                 checkpoint: Optional[str],
                 probe_head: dict,
                 data_preprocessor: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 **trained):
        trained_cfg = dict(
            type=trained_type,
            data_preprocessor=data_preprocessor,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            **trained)
        super().__init__(
            backbone=dict(type='FrozenSegmentorEmbedder', model=trained_cfg, checkpoint=checkpoint),
            decode_head=probe_head,
            data_preprocessor=data_preprocessor,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            init_cfg=init_cfg)

    def _init_decode_head(self, decode_head: dict) -> None:
        decode_head = dict(decode_head)
        derived = self.backbone.out_channels
        given = decode_head.setdefault('in_channels', derived)
        if given != derived:
            raise ValueError(f'probe_head.in_channels={given} in the config but the trained '
                             f'model\'s pixel embeddings have {derived} channels. Remove '
                             'in_channels from probe_head (it is derived from the trained model).')
        super()._init_decode_head(decode_head)
