"""ReCLIP++ head with a learnable Query prompt (paper Table IV, docs/method.md §11.4)."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS

from .reclip_head import ReCLIPHead


def learnable_queries(text_encoder: nn.Module, context: torch.Tensor, tokens: torch.Tensor,
                      eot: torch.Tensor) -> torch.Tensor:
    """``Q = normalize_rows(T([SOS] + context + name + [EOT]))`` ``[N, D]`` (one row per name)."""
    return F.normalize(text_encoder.encode_context_prompts(context, tokens, eot), dim=-1)


@MODELS.register_module()
class LearnableQueryReCLIPHead(ReCLIPHead):
    """:class:`ReCLIPHead` whose Query is a learnable CoOp prompt (paper Table IV).

    ``Q`` is built like the Reference (docs/method.md §3) but from its own ``M``
    context vectors shared by all classes (``query_context``), one prompt per class
    name, each row L2-normalised (Q of the fixed template ensemble is unit-norm too)::

        Q = normalize_rows(T([SOS] + query_context + name + [EOT]))   [N, D]

    ``Q`` then serves everywhere the fixed ``Q`` served (query logits, stage-1 loss).
    While training it carries gradients; outside training it is computed once and kept
    in ``query_embeds`` (so the distillation student inherits the learnt ``Q`` as usual).

    Args:
        query_num_context (int): ``M`` of the Query prompt (default 73, the Reference's;
            the paper gives none).
        query_ctx_init (str): ``'token0'`` (as the Reference) or ``'normal'`` (std 0.02).
        query_name_token_mode (str): ``'eot'`` or ``'released'`` (see
            :meth:`OpenCLIPTextEncoder.name_tokens`).
        Other arguments: see :class:`ReCLIPHead` (``templates`` are not used).

    Shapes:
        :meth:`queries` → ``[N, D]``; ``forward`` as :class:`ReCLIPHead`.
    """

    def __init__(self,
                 query_num_context: int = 73,
                 query_ctx_init: str = 'token0',
                 query_name_token_mode: str = 'eot',
                 **kwargs):
        super().__init__(**kwargs)
        if query_ctx_init not in ('token0', 'normal'):
            raise ValueError(f"query_ctx_init must be 'token0' or 'normal', got {query_ctx_init!r}")
        self.query_ctx_init = query_ctx_init
        self.query_context = nn.Parameter(torch.zeros(query_num_context, self.text_encoder.width))
        tokens, eot = self.text_encoder.name_tokens(self.flat_names, query_num_context,
                                                    query_name_token_mode)
        self.register_buffer('query_tokens', tokens, persistent=False)
        self.register_buffer('query_eot', eot, persistent=False)
        self.reset_query_context()

    def reset_query_context(self) -> None:
        """Initialise the Query context like the Reference's (docs/method.md §3)."""
        with torch.no_grad():
            if self.query_ctx_init == 'token0':
                token0 = self.text_encoder.token_embeddings(
                    torch.zeros(1, dtype=torch.long, device=self.query_context.device))
                self.query_context.copy_(token0.expand_as(self.query_context))
            else:
                nn.init.normal_(self.query_context, std=0.02)

    def init_weights(self) -> None:
        # mmengine's default init would overwrite the method's initialisation; Q is
        # rebuilt from the reset context by the base class's init.
        self.reset_query_context()
        self.query_ready.fill_(False)
        super().init_weights()

    def build_queries(self) -> torch.Tensor:
        """``Q`` ``[N, D]`` from the current context (with gradients)."""
        return learnable_queries(self.text_encoder, self.query_context, self.query_tokens,
                                 self.query_eot)

    def queries(self) -> torch.Tensor:
        """``Q`` ``[N, D]``: with gradients while training, else kept in ``query_embeds``."""
        if self.training:
            self.query_ready.fill_(False)  # the context moves: rebuild after training
            return self.build_queries()
        if not bool(self.query_ready):
            with torch.no_grad():
                self.query_embeds.copy_(self.build_queries().to(self.query_embeds.dtype))
            self.query_ready.fill_(True)
        return self.query_embeds

    def train(self, mode: bool = True):
        if mode:
            self.query_ready.fill_(False)
        return super().train(mode)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # query_embeds of a checkpoint were written from its query_context; a checkpoint
        # without them rebuilds Q from the loaded context on first use.
        if prefix + 'query_embeds' not in state_dict:
            self.query_ready.fill_(False)
