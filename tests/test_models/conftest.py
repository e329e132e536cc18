"""Fixtures shared by the model tests."""
import pytest


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A tiny CLIP file and a trained-looking stage-1 teacher checkpoint
    (:func:`tests.distill_utils.make_files`)."""
    from tests.distill_utils import make_files
    return make_files(tmp_path_factory)
