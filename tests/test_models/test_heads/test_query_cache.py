"""The on-disk query-embedding cache is validated before use: a tensor of the right
shape but wrong content (rotated, permuted, NaN, not unit norm, other names, old
format) is rebuilt, never used."""
import os

import pytest
import torch
from mmengine.config import ConfigDict
from mmseg.registry import MODELS

from tests.clip_utils import TINY, save_random_clip

NAMES = ['cat', 'dog', 'bird']


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
    return save_random_clip(str(tmp_path_factory.mktemp('qclip') / 'clip.pt'))


def build(clip, cache_dir, names=NAMES):
    return MODELS.build(
        ConfigDict(
            type='MaskCLIPHead',
            class_names=names,
            num_classes=len(names),
            in_channels=64,
            templates='single',
            query_cache_dir=str(cache_dir),
            text_encoder=dict(type='OpenCLIPTextEncoder', model_name=TINY, pretrained=clip)))


def test_cache_is_reused_only_when_valid(clip, tmp_path):
    first = build(clip, tmp_path)
    fresh = first.queries().clone()
    path, key = first._query_cache().path, first._query_cache().key
    saved = torch.load(path, weights_only=True)
    assert saved['names'] == NAMES
    torch.testing.assert_close(saved['queries'], fresh, rtol=0, atol=0)

    rot = torch.linalg.qr(torch.randn(64, 64, generator=torch.Generator().manual_seed(0)))[0]
    nan = fresh.clone()
    nan[1, 3] = float('nan')
    bad = {
        'rotated': dict(queries=fresh @ rot, names=NAMES, key=key),  # unit norm, right shape
        'permuted': dict(queries=fresh[[2, 1, 0]], names=NAMES, key=key),
        'nan': dict(queries=nan, names=NAMES, key=key),
        'scaled': dict(queries=fresh * 2, names=NAMES, key=key),
        'names': dict(queries=fresh, names=['a', 'b', 'c'], key=key),
        'shape': dict(queries=fresh[:2], names=NAMES, key=key),
        'old format': fresh,
        'no key':
        dict(queries=torch.cat([fresh[:1], fresh[1:2] * (1 - 1e-5), fresh[2:]]), names=NAMES),
    }
    for what, content in bad.items():
        torch.save(content, path)
        head = build(clip, tmp_path)
        q = head.queries()
        torch.testing.assert_close(q, fresh, msg=what)  # rebuilt, not the cache's
        rewritten = torch.load(path, weights_only=True)
        torch.testing.assert_close(rewritten['queries'], fresh, msg=what)

    # a file written through the cache (content digest stored) is used as it is: the
    # middle rows are not re-encoded (that would defeat the cache)
    marked = dict(queries=fresh.clone(), names=NAMES)
    marked['queries'][1] = fresh[1] * (1 - 1e-5)
    first._query_cache().save(marked)
    head = build(clip, tmp_path)
    torch.testing.assert_close(head.queries(), marked['queries'], rtol=0, atol=0)
    assert os.listdir(tmp_path) == [os.path.basename(path)]


FIVE = ['cat', 'dog', 'bird', 'horse', 'sheep']


def test_swapped_middle_rows_are_rejected_and_recomputed(clip, tmp_path):
    """Two middle rows swapped in the stored tensor (first and last rows intact, every
    row a valid unit vector): the content digest no longer matches, so the cache is
    rebuilt; never would two classes trade places."""
    head = build(clip, tmp_path, FIVE)
    fresh = head.queries().clone()
    path = head._query_cache().path
    data = torch.load(path, weights_only=True)
    data['queries'] = data['queries'][[0, 3, 2, 1, 4]]
    torch.save(data, path)
    again = build(clip, tmp_path, FIVE)
    torch.testing.assert_close(again.queries(), fresh, rtol=0, atol=0)
    torch.testing.assert_close(torch.load(path, weights_only=True)['queries'], fresh)


def test_names_are_compared_one_by_one(clip, tmp_path):
    """A cache honestly written (valid digest) under this file name for other names of
    the same count, or for the same names in another order, is not these queries."""
    head = build(clip, tmp_path, FIVE)
    fresh = head.queries().clone()
    cache = head._query_cache()
    order = [4, 3, 2, 1, 0]
    cases = ((['a', 'b', 'c', 'd', 'e'], fresh), ([FIVE[i] for i in order], fresh[order]))
    for names, queries in cases:
        cache.save(dict(queries=queries, names=names))
        again = build(clip, tmp_path, FIVE)
        torch.testing.assert_close(again.queries(), fresh, rtol=0, atol=0, msg=str(names))
        assert torch.load(cache.path, weights_only=True)['names'] == FIVE
