"""mmseg-reclip: ReCLIP++ for MMSegmentation 1.x.

Importing this package (directly or through ``custom_imports``) applies the
compatibility glue of :mod:`mmseg_reclip.compat` and registers every component in
mmseg's registries.
"""
from . import compat

compat.apply()

from . import datasets, engine, evaluation, models, utils  # noqa: E402,F401

# isort: split
# After models: crop_vote reads models.utils, and models (ReCLIP, the heads) import
# crop_vote, so importing it first would re-enter a half-imported crop_vote.
from . import crop_vote  # noqa: E402,F401

__version__ = '0.1.0'
