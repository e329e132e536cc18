"""Crop-vote cache with the right key but bad content is recomputed, never trained on;
mostly-empty hypotheses are reported loudly."""
import os

import torch

from mmseg_reclip.crop_vote.hook import CropVoteHypothesisHook
from mmseg_reclip.crop_vote.vote import hypotheses_problem
from mmseg_reclip.utils.cache import DIGEST_FIELD, content_digest
from tests.crop_vote_utils import get_hook, read_log
from tests.security_utils import write_payload


def test_problem_detection():
    paths = ['a', 'b']
    assert hypotheses_problem({'a': [0, 3], 'b': []}, paths, 4) is None
    assert 'outside [0, 4)' in hypotheses_problem({'a': [-1], 'b': []}, paths, 4)
    assert 'outside [0, 4)' in hypotheses_problem({'a': [4], 'b': []}, paths, 4)
    assert 'not an int' in hypotheses_problem({'a': [1.0], 'b': []}, paths, 4)
    assert 'not an int' in hypotheses_problem({'a': [True], 'b': []}, paths, 4)
    assert 'lacks 1 of 2' in hypotheses_problem({'a': [1]}, paths, 4)


def _rewrite(path, **change):
    """Change the hypotheses and store a matching content digest: a consistent file
    with bad content, which only the content validation can catch."""
    data = torch.load(path, weights_only=True)
    data['hypotheses'] = change['fn'](data['hypotheses'])
    data[DIGEST_FIELD] = content_digest(data)
    torch.save(data, path)


def test_edit_without_digest_is_recomputed(trained):
    runner, _ = trained
    hook = get_hook(runner)
    good = dict(hook.hypotheses)
    data = torch.load(hook.cache_path, weights_only=True)
    first, second = sorted(good)[:2]
    data['hypotheses'][first], data['hypotheses'][second] = good[second], good[first]
    torch.save(data, hook.cache_path)
    again = CropVoteHypothesisHook(window=0.5)
    again.before_train(runner)
    assert not again.cache_reused and again.hypotheses == good
    assert 'does not match its content digest' in read_log(runner)


def test_bad_content_with_right_key_is_recomputed(trained):
    runner, _ = trained
    hook = get_hook(runner)
    good = dict(hook.hypotheses)
    first = sorted(good)[0]
    edits = {
        'negative': lambda h: {
            **h, first: [-1]
        },
        'out of range': lambda h: {
            **h, first: [999]
        },
        'subset': lambda h: {
            k: v
            for k, v in h.items() if k != first
        },
        'float': lambda h: {
            **h, first: [0.5]
        },
    }
    for what, fn in edits.items():
        _rewrite(hook.cache_path, fn=fn)
        again = CropVoteHypothesisHook(window=0.5)
        again.before_train(runner)
        assert not again.cache_reused, what
        assert again.hypotheses == good, what
        assert torch.load(hook.cache_path, weights_only=True)['hypotheses'] == good
    assert 'has the right key but invalid content' in read_log(runner)


def test_all_empty_hypotheses_warn(trained):
    runner, _ = trained
    hook = get_hook(runner)
    _rewrite(hook.cache_path, fn=lambda h: {k: [] for k in h})
    again = CropVoteHypothesisHook(window=0.5)
    again.before_train(runner)
    assert again.cache_reused  # valid content: the user's settings may really say so
    assert 'have an EMPTY hypothesis: their loss is zero' in read_log(runner)


def test_payload_in_cache_never_runs(trained, tmp_path):
    runner, _ = trained
    hook = get_hook(runner)
    good = dict(hook.hypotheses)
    marker = tmp_path / 'MARKER'
    write_payload(hook.cache_path, marker, key=hook.cache_key, hypotheses=good)
    again = CropVoteHypothesisHook(window=0.5)
    again.before_train(runner)
    assert not marker.exists() and not again.cache_reused and again.hypotheses == good
    assert os.path.isfile(hook.cache_path)
