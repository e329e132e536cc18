"""Broken bias branches, to show that tests/test_benchmarks/test_planted_bias.py catches
them (docs/learning_check.md §CI test). Imported into a tool run through
``custom_imports`` only when ``PLANTED_BIAS_MUTANT=pe_zero`` is set for that test.

``pe_zero``: the PE projection of the bias extractor is zero and frozen, so ``B = 0``
whatever the training does.
"""
import torch

from mmseg_reclip.models.decode_heads.bias_extractor import ReferenceBiasExtractor

_reset_context = ReferenceBiasExtractor.reset_context


def _zero_pe_projection(self) -> None:
    _reset_context(self)
    with torch.no_grad():
        self.pe_proj.weight.zero_()
        self.pe_proj.bias.zero_()
    self.pe_proj.requires_grad_(False)


ReferenceBiasExtractor.reset_context = _zero_pe_projection
