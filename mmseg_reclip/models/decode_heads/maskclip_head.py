"""Query head: cosine logits of dense CLIP features against template-ensemble queries."""
import hashlib
import json
from typing import List, Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import print_log
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS

from ...utils.amp import autocast_off
from ...utils.cache import KeyedCache
from ..utils import dense_class_logits, name_map
from ..utils.class_set import ClassSetStateMixin, templates_id
from ..utils.clip_dims import check_dim


def normalize_class_names(class_names: Union[str, Sequence]) -> List[List[str]]:
    """Class names as a list of synonym lists (a dataset key like ``'voc20'`` or a list)."""
    from mmseg_reclip.datasets.class_names import get_class_names
    return get_class_names(class_names)


@MODELS.register_module()
class MaskCLIPHead(ClassSetStateMixin, BaseDecodeHead):
    """Fixed query head of MaskCLIP / ReCLIP++ (docs/method.md §2).

    Holds the frozen CLIP text side and the query embeddings ``Q`` (one unit vector per
    class name, 85-template ensemble). ``Q`` is computed once, the first time it is needed
    (or loaded from a checkpoint), and stored as a buffer; it is never recomputed at
    train or test time.

    The class names and template set are saved in the checkpoint
    (``decode_head._extra_state``); loading a checkpoint of other classes raises
    :class:`~mmseg_reclip.models.utils.class_set.ClassSetMismatchError` (see
    ``docs/errors.md``).

    Args:
        class_names (str | list): a dataset key of
            :mod:`mmseg_reclip.datasets.class_names` or a list whose entries are a name
            or a list of synonyms (a class scores the max over its names).
        text_encoder (dict): config of :class:`OpenCLIPTextEncoder`.
        templates (str | list[str]): prompt templates or a key (``'reclip85'``).
        num_classes (int, optional): ``C``; must equal ``len(class_names)``. ``None``:
            taken from ``class_names`` (e.g. the number of classes in a class-name file).
        in_channels (int, optional): feature dim ``D``; ``None`` (default): the CLIP
            text embedding's (ViT-B-16: 512, ViT-L-14: 768). A value that disagrees
            with the CLIP is an error.
        show_progress (bool): progress bar while building ``Q``.
        query_cache_dir (str, optional): disk cache of ``Q`` for real CLIP weights
            (``None`` disables it).

    Shapes:
        ``forward(inputs)``: ``inputs[0]`` ``[B, D, h, w]`` L2-normalised → query logits
        ``Lq`` ``[B, C, h, w]``.
    """

    def __init__(self,
                 class_names: Union[str, Sequence],
                 text_encoder: dict,
                 num_classes: Optional[int] = None,
                 in_channels: Optional[int] = None,
                 templates: Union[str, Sequence[str]] = 'reclip85',
                 show_progress: bool = True,
                 query_cache_dir: Optional[str] = '~/.cache/mmseg_reclip',
                 init_cfg: Optional[dict] = None,
                 **kwargs):
        if num_classes is None:  # one class per entry of the list / line of the file
            num_classes = len(normalize_class_names(class_names))
        # Built before the base class so that D comes from the CLIP it encodes with.
        text = MODELS.build(text_encoder)
        check_dim(
            type(self).__name__, 'in_channels', in_channels, text.embed_dim,
            getattr(text, 'model_name', '?'))
        in_channels = text.embed_dim
        kwargs.setdefault('channels', in_channels)
        # BaseDecodeHead builds a loss even for a training-free head; avoid its CE default.
        kwargs.setdefault('loss_decode', dict(type='ReCLIPContrastiveLoss'))
        super().__init__(
            in_channels=in_channels, num_classes=num_classes, init_cfg=init_cfg, **kwargs)
        del self.conv_seg  # the classifier is the frozen query embedding
        self.class_names = normalize_class_names(class_names)
        if len(self.class_names) != num_classes:
            raise ValueError(
                f'{len(self.class_names)} class names given for num_classes={num_classes}. '
                'Give one entry (a name or a list of synonyms) per dataset class, in the '
                "dataset's order, or fix num_classes.")
        from mmseg_reclip.datasets.templates import get_templates
        self.templates = get_templates(templates)
        self.templates_id = templates_id(templates, self.templates)
        self.text_encoder = text
        self.show_progress = show_progress
        self.query_cache_dir = query_cache_dir
        flat = [name for names in self.class_names for name in names]
        name_to_class = [c for c, names in enumerate(self.class_names) for _ in names]
        self.flat_names = flat
        self.register_buffer('query_embeds', torch.zeros(len(flat), in_channels))
        self.register_buffer('name_to_class', torch.tensor(name_to_class, dtype=torch.long))
        self.register_buffer('query_ready', torch.tensor(False))

    def init_weights(self) -> None:
        super().init_weights()
        self.queries()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # `query_ready` may only be True for queries that were built or loaded: a
        # checkpoint without `query_embeds` (converted from the released code) keeps
        # whatever this head had; shape mismatches were refused by the mixin.
        ready_before = bool(self.query_ready)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + 'query_embeds' not in state_dict:
            self.query_ready.fill_(ready_before)
        elif prefix + 'query_ready' not in state_dict:
            self.query_ready.fill_(True)

    @torch.no_grad()
    def queries(self) -> torch.Tensor:
        """``Q`` ``[N, D]`` (``N`` names, ``>= C`` with synonyms), built on first use.

        Built once and kept as a buffer (saved in checkpoints). With ``query_cache_dir``
        and real (non-random) CLIP weights, it is also cached on disk under a key of
        (weights, names, templates), so a new run does not re-encode the templates.
        """
        if not bool(self.query_ready):
            # Q is kept (buffer, checkpoint, disk cache): always built in fp32, even when
            # first needed inside an autocast region (AMP training or inference).
            with autocast_off():
                self.query_embeds.copy_(self._load_or_build_queries())
            self.query_ready.fill_(True)
        return self.query_embeds

    def _query_cache(self) -> Optional[KeyedCache]:
        """The on-disk cache of ``Q`` (real weights only), keyed by weights, names and
        templates; ``None`` without a cache dir or for random weights."""
        weights = self.text_encoder.weights_id
        if not self.query_cache_dir or weights is None:
            return None
        key = hashlib.sha256(json.dumps([weights, self.flat_names,
                                         self.templates]).encode()).hexdigest()
        return KeyedCache(self.query_cache_dir, 'queries_', key, digits=24, what='Query cache')

    def _cached_queries_problem(self, data) -> Optional[str]:
        """Why a loaded query cache cannot be used (None if it can).

        The file must be ``dict(queries=[N, D] float tensor, names=[N names])`` for these
        names, with finite unit-norm rows; and two rows (first and last name) must match
        a fresh encoding, which catches a foreign tensor of the right shape (another
        CLIP, other templates) at the cost of ``2 x templates`` prompts. Rows edited or
        permuted inside the file are caught before this check, by the cache's content
        digest (:class:`KeyedCache`); a file forged with a matching digest is not (see
        docs/trust.md).
        """
        if not isinstance(data, dict) or not torch.is_tensor(data.get('queries')):
            return 'not a query cache (old format?)'
        q = data['queries']
        if data.get('names') != self.flat_names:
            return 'written for other class names'
        if tuple(q.shape) != tuple(self.query_embeds.shape) or not q.is_floating_point():
            return (f'shape {tuple(q.shape)} {q.dtype}, expected '
                    f'{tuple(self.query_embeds.shape)} float')
        if not bool(torch.isfinite(q).all()):
            return 'non-finite values'
        norms = q.float().norm(dim=-1)
        if not bool(torch.allclose(norms, torch.ones_like(norms), atol=1e-3)):
            return f'rows are not unit vectors (norms {norms.min():.4f}..{norms.max():.4f})'
        rows = sorted({0, len(self.flat_names) - 1})
        fresh = self.text_encoder.build_queries([self.flat_names[i] for i in rows],
                                                self.templates).float().cpu()
        cos = (fresh * q[rows].float()).sum(-1)
        if bool((cos < 0.999).any()):
            return (f'rows {rows} differ from a fresh encoding (cosine '
                    f'{[round(float(c), 4) for c in cos]})')
        return None

    def _load_or_build_queries(self) -> torch.Tensor:
        cache = self._query_cache()
        data = cache.load(self._cached_queries_problem) if cache is not None else None
        if data is not None:
            print_log(f'Query embeddings loaded from cache {cache.path}', logger='current')
            return data['queries'].to(self.query_embeds.dtype)
        print_log(
            f'Building query embeddings: {len(self.flat_names)} names x '
            f'{len(self.templates)} templates',
            logger='current')
        queries = self.text_encoder.build_queries(
            self.flat_names, self.templates, show_progress=self.show_progress)
        if cache is not None:
            cache.save(dict(queries=queries.cpu(), names=list(self.flat_names)))
        return queries

    def query_logits(self, feats: torch.Tensor) -> torch.Tensor:
        """``Lq = F·Qᵀ`` ``[B, C, h, w]`` (max over synonyms)."""
        return dense_class_logits(feats, self.queries(), self.name_map, self.num_classes)

    @property
    def name_map(self) -> Optional[torch.Tensor]:
        """``name_to_class`` for the synonym maximum, ``None`` with one name per class
        (see :func:`~mmseg_reclip.models.utils.clip_ops.name_map`)."""
        return name_map(self.name_to_class, self.num_classes)

    def forward_features(self, inputs: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        """``F`` ``[B, D, h, w]``: the backbone's CLIP features, used as they are."""
        return inputs[0]

    def forward(self, inputs: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.query_logits(self.forward_features(inputs))

    def loss(self, *args, **kwargs):
        raise RuntimeError('MaskCLIPHead is training-free: it has nothing to train. Use '
                           'ReCLIPHead to learn the bias rectification.')
