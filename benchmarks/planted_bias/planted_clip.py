"""A toy CLIP image tower whose dense features carry a planted bias (docs/learning_check.md)."""
import json
import os.path as osp
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmseg.registry import MODELS

from mmseg_reclip.datasets.templates import get_templates
from mmseg_reclip.models.text_encoders.clip_text import OpenCLIPTextEncoder
from mmseg_reclip.models.utils import resize_pos_embed_grid
from . import world as W


@MODELS.register_module()
class PlantedBiasCLIP(BaseModule):
    """Toy CLIP image tower of the planted-bias world, in the text space of a real CLIP.

    Reads ``world.json`` (written by ``benchmarks/planted_bias/generate.py``) and the
    CLIP file it names. The class embeddings are that CLIP's template-ensemble queries
    ``Q`` (the very rows the heads build, docs/method.md §2); the space-bias profile is
    channel 0 of the CLIP file's image PE grid, the grid the text encoder copies for the
    bias extractor (docs/method.md §3). Dense features, per 16×16 patch::

        F = normalize(Σ_k π_k A_k + ρ(x)·m(x)·β(Q_b − Q_a) + noise·P_t·t)

    with ``π`` the patch's soft class content (its mean colour against the class
    colours), ``m`` its share of the object classes (``space_classes``), ``A`` the
    class embeddings with the planted class leans, ``ρ`` the PE
    profile at the input's grid (bicubic, as the bias extractor resizes it) and ``t``
    texture statistics of the patch. The crop-vote embedding (:meth:`encode_image`) is
    ``normalize(mean π·Q)``: no lean, no space bias, no noise.

    No parameter: frozen by construction, nothing saved in checkpoints.

    Args:
        world_file (str): the world's ``world.json``.
        model_name (str): open_clip model name of the CLIP file (filled in from the
            segmentor's ``clip``).
        pretrained (str): the CLIP file (default: the one ``world.json`` names).
        quick_gelu (bool, optional): as for the real CLIP parts.
        templates (str | list[str]): query templates; must be the heads' templates.
        ln_eps: accepted for the shared ``clip`` entry; unused.

    Shapes:
        input ``[B, 3, H, W]`` RGB in 0-255 (the world's data preprocessor does not
        normalise) → ``(F,)`` ``[B, D, ceil(H/16), ceil(W/16)]``.
    """

    def __init__(self,
                 world_file: str,
                 model_name: str = 'ViT-Tiny-16-test',
                 pretrained: Optional[str] = None,
                 quick_gelu: Optional[bool] = None,
                 templates: Union[str, Sequence[str]] = 'reclip85',
                 ln_eps: Optional[float] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if not osp.isfile(world_file):
            raise FileNotFoundError(
                f'Planted-bias world file not found: {osp.abspath(world_file)!r}. Generate the '
                'world first: python -m benchmarks.planted_bias.generate --out <folder>.')
        with open(world_file) as f:
            world = json.load(f)
        self.world = world
        pretrained = pretrained or osp.join(osp.dirname(world_file), world['clip_file'])
        text = OpenCLIPTextEncoder(model_name, pretrained, quick_gelu=quick_gelu)
        queries = text.build_queries(world['classes'], get_templates(templates))
        self.register_buffer('queries', queries, persistent=False)
        self.register_buffer('embeds', W.class_embeddings(queries, world['lean']), persistent=False)
        self.register_buffer(
            'direction', W.space_direction(queries, world['space']), persistent=False)
        self.register_buffer(
            'colours', torch.tensor(world['colours'], dtype=torch.float32), persistent=False)
        self.register_buffer('pe_grid', text.image_pos_embed.clone(), persistent=False)
        gen = torch.Generator().manual_seed(int(world['texture_seed']))
        proj = torch.randn(queries.shape[1], W.TEXTURE_DIMS, generator=gen)
        self.register_buffer(
            'texture_proj', proj / (W.TEXTURE_DIMS * queries.shape[1])**0.5, persistent=False)
        self.patch_size = (W.PATCH, W.PATCH)
        self.embed_dim = queries.shape[1]
        self.width = self.pe_grid.shape[0]
        report = osp.join(osp.dirname(world_file), 'soundness.json')
        if osp.isfile(report):  # the generator's evidence, in every run's log
            with open(report) as f:
                print_log('Planted-bias world soundness: ' + f.read().strip(), logger='current')

    def init_weights(self) -> None:
        pass  # nothing to initialise: the world is fixed

    def profile(self, size: Tuple[int, int]) -> torch.Tensor:
        """``ρ`` ``[h, w]``: PE channel 0 resized to the grid ``size``."""
        return resize_pos_embed_grid(self.pe_grid, tuple(size))[0]

    def pos_embed_grid(self, size: Optional[tuple] = None) -> torch.Tensor:
        return self.pe_grid if size is None else resize_pos_embed_grid(self.pe_grid, size)

    def pad_to_patch(self, img: torch.Tensor) -> torch.Tensor:
        pad_h, pad_w = (-img.shape[-2]) % W.PATCH, (-img.shape[-1]) % W.PATCH
        return F.pad(img, (0, pad_w, 0, pad_h)) if pad_h or pad_w else img

    @torch.no_grad()
    def forward(self, img: torch.Tensor) -> Tuple[torch.Tensor]:
        img = self.pad_to_patch(img.float())
        evidence = W.patch_class_evidence(img, self.colours, self.world['sharpness'])
        texture = W.patch_texture(img, self.colours, self.world['pixel_noise'])
        feats = W.planted_features(evidence, self.embeds, self.profile(evidence.shape[-2:]),
                                   self.direction, self.world['space_classes'], texture,
                                   self.texture_proj, self.world['noise'])
        return (feats, )

    @torch.no_grad()
    def encode_image(self, img: torch.Tensor) -> torch.Tensor:
        """Crop-vote embedding ``[N, D]`` of ``[N, 3, S, S]`` crops (no bias)."""
        evidence = W.patch_class_evidence(
            self.pad_to_patch(img.float()), self.colours, self.world['sharpness'])
        return W.global_embedding(evidence, self.queries)
