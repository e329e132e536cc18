"""Helpers for the tests of ``tools/infer.py``: the tiny-CLIP settings and the tool
loaded as a module.

Import from a test module as ``from tests.infer_utils import tiny_options, load_infer``.
"""
import importlib.util

from tests.clip_utils import TINY
from tests.tool_utils import REPO_ROOT

MASKCLIP = 'configs/maskclip/maskclip_vit-b16_custom.py'
STAGE1 = 'configs/reclip/reclip_vit-b16_custom.py'


def tiny_settings(clip: str) -> dict:
    """Config settings for the tiny random CLIP and a small test scale (runs stay short)."""
    return {
        'model.clip.model_name': TINY,
        'model.clip.pretrained': clip,
        'model.decode_head.in_channels': 64,
        'model.decode_head.templates': 'single',
        'model.decode_head.query_cache_dir': None,
        'test_pipeline.1.scale': (256, 96)
    }


def tiny_options(clip: str) -> list:
    """:func:`tiny_settings` as ``--cfg-options`` arguments."""
    return [f'{k}={v}'.replace(' ', '') for k, v in tiny_settings(clip).items()]


def load_infer():
    """``tools/infer.py`` as a module (its ``main(argv)`` runs the tool in-process)."""
    spec = importlib.util.spec_from_file_location('infer_tool', REPO_ROOT / 'tools/infer.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
