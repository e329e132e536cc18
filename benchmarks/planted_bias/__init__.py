"""The planted-bias world: a CPU benchmark and end-to-end test in which the bias that
ReCLIP++ should rectify is known (docs/learning_check.md).

Importing it (``custom_imports=dict(imports=['benchmarks.planted_bias'])``) registers
the toy image tower :class:`PlantedBiasCLIP` (and the whole plugin).
"""
import mmseg_reclip  # noqa: F401  (registers the plugin)
from .planted_clip import PlantedBiasCLIP

__all__ = ['PlantedBiasCLIP']
