"""Broken bias branches, to show that tests/test_benchmarks/test_planted_bias.py catches
them (docs/learning_check.md §CI test). Each mutant is a config next to this file that
the test trains instead of ``planted_reclip.py`` when ``PLANTED_BIAS_MUTANT`` names it:

- ``bias_none``: ``bias_mode='none'`` (the bias is computed but not subtracted):
  ``tests/planted_mutant_bias-none.py``;
- ``pe_zero``: the PE projection is zero and frozen, so ``B = 0`` whatever the training
  does: :class:`ZeroPEBiasExtractor`, ``tests/planted_mutant_pe-zero.py``.

A mutant is a registered component named in its config's ``custom_imports``, not a
``--cfg-options custom_imports=...`` override: mmengine imports a config's custom modules
when it reads the file, before the command-line options are merged, so such an override
never imports anything.
"""
import torch
from mmseg.registry import MODELS

from mmseg_reclip.models.decode_heads.bias_extractor import ReferenceBiasExtractor


@MODELS.register_module()
class ZeroPEBiasExtractor(ReferenceBiasExtractor):
    """:class:`ReferenceBiasExtractor` whose PE projection is zero and not trainable:
    ``P = 0``, so ``B = P·Rᵀ = 0``."""

    def reset_context(self) -> None:
        super().reset_context()
        with torch.no_grad():
            self.pe_proj.weight.zero_()
            self.pe_proj.bias.zero_()
        self.pe_proj.requires_grad_(False)
