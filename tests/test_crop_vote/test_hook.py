"""CropVoteHypothesisHook end to end in a real Runner with a real (tiny, random-weight)
ReCLIP model: cache, resume, keys, global mode, errors, two ranks. The voting maths is
tested in tests/test_crop_vote/test_vote.py."""
import glob
import os
import os.path as osp
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS, HOOKS, MODELS
from mmseg.structures import SegDataSample

import mmseg_reclip  # noqa: F401  (registrations)
from mmseg_reclip.crop_vote.hook import CACHE_PREFIX, CropVoteHypothesisHook
from mmseg_reclip.utils.cache import DIGEST_FIELD, content_digest
from tests.crop_vote_utils import (MEAN, STD, build_runner, caches, dataset_cfg, get_hook,
                                   independent_crop_vote, model_cfg, read_log)
from tests.data_utils import make_voc_layout


def test_hook_arg_checks():
    with pytest.raises(ValueError, match='score_threshold and top_k'):
        CropVoteHypothesisHook(mode='global')
    with pytest.raises(ValueError):
        CropVoteHypothesisHook(mode='vote')
    with pytest.raises(ValueError):
        CropVoteHypothesisHook(window=1.5)
    with pytest.raises(ValueError):
        CropVoteHypothesisHook(min_frequency=1.0)
    hook = HOOKS.build(
        dict(type='CropVoteHypothesisHook', window=56, stride=None, min_frequency=0.0))
    assert isinstance(hook, CropVoteHypothesisHook)


def test_runner_end_to_end_cache_and_resume(tmp_path, clip_file):
    data_root = make_voc_layout(str(tmp_path / 'voc'))
    work_dir = tmp_path / 'work'
    runner = build_runner(work_dir, data_root, clip_file)
    runner.train()  # the ReCLIP head's loss needs the hypotheses: training proves them
    hook = get_hook(runner)
    assert not hook.cache_reused
    files = caches(work_dir)
    assert files == [hook.cache_path]
    assert not [f for f in os.listdir(work_dir) if f.endswith('.tmp')]
    data = torch.load(files[0], weights_only=True)
    assert set(data) == {'key', 'settings', 'hypotheses', DIGEST_FIELD}
    assert data[DIGEST_FIELD] == content_digest(data)
    assert data['key'] == hook.cache_key and osp.basename(
        files[0]) == (f'{CACHE_PREFIX}{hook.cache_key[:16]}.pth')
    assert data['settings']['window'] == 56 and data['settings']['bgr_to_rgb'] is True
    paths = sorted(glob.glob(osp.join(data_root, 'JPEGImages', '*.jpg')))
    assert sorted(data['hypotheses']) == paths == sorted(hook.hypotheses)
    assert data['hypotheses'] == hook.hypotheses

    model = runner.model
    model.eval()
    for path in paths:  # 221 crops for the real VOC photo, 12 for each 96x128 image
        expected, scores = independent_crop_vote(model, path, 56, 28)
        assert scores.shape[1] == 20
        assert hook.hypotheses[path] == expected, path
    assert 'Crop-vote hypotheses (crop_vote): 4 images' in read_log(runner)
    assert 'written to' in read_log(runner)

    # resume from the last checkpoint: before_train runs again and reuses the cache
    mtime = os.stat(files[0]).st_mtime_ns
    runner2 = build_runner(work_dir, data_root, clip_file, max_iters=3, resume=True)
    runner2.train()
    hook2 = get_hook(runner2)
    assert runner2.iter == 3
    assert hook2.cache_reused and hook2.hypotheses == hook.hypotheses
    assert caches(work_dir) == files and os.stat(files[0]).st_mtime_ns == mtime
    assert 'reused the cache' in read_log(runner2)


def test_keys_settings_images_and_content(trained, clip_file, tmp_path):
    runner, data_root = trained
    hook = get_hook(runner)
    work_dir = runner.work_dir
    first = caches(work_dir)
    assert first == [hook.cache_path] and not hook.cache_reused

    # same settings: reused
    same = CropVoteHypothesisHook(window=0.5, batch_size=7)
    same.before_train(runner)
    assert same.cache_reused and same.cache_key == hook.cache_key
    assert same.hypotheses == hook.hypotheses

    # θ changes the key: a new cache file next to the old one
    other = CropVoteHypothesisHook(window=0.5, min_frequency=0.3)
    other.before_train(runner)
    assert not other.cache_reused and other.cache_key != hook.cache_key
    assert len(caches(work_dir)) == 2
    for path, classes in other.hypotheses.items():  # a θ-subset of the θ=0 votes
        assert set(classes) <= set(hook.hypotheses[path])

    # the model is put in eval mode for the votes and restored afterwards
    seen = []
    handle = runner.model.backbone.visual.register_forward_pre_hook(
        lambda m, a: seen.append(runner.model.training))
    runner.model.train()
    CropVoteHypothesisHook(window=0.5, cache_dir=str(tmp_path / 'c2')).before_train(runner)
    handle.remove()
    assert seen and not any(seen) and runner.model.training
    assert len(caches(tmp_path / 'c2')) == 1

    # the image set: a subset split gives another key
    split = osp.join(data_root, 'ImageSets', 'Segmentation', 'sub.txt')
    with open(split, 'w') as f:
        f.write('gen_000000\nreal_000000\n')
    runner_sub = build_runner(
        tmp_path / 'work_sub',
        data_root,
        clip_file,
        hook=dict(window=0.5, cache_dir=work_dir),
        ann_file='ImageSets/Segmentation/sub.txt',
        max_iters=1)
    runner_sub.train()
    sub = get_hook(runner_sub)
    assert not sub.cache_reused and sub.cache_key not in (hook.cache_key, other.cache_key)
    assert len(sub.hypotheses) == 2
    for path, classes in sub.hypotheses.items():
        assert classes == hook.hypotheses[path]
    assert len(caches(work_dir)) == 3

    # touching a file (mtime only) invalidates; so does new content
    img = osp.join(data_root, 'JPEGImages', 'gen_000001.jpg')
    st = os.stat(img)
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    touched = CropVoteHypothesisHook(window=0.5)
    touched.before_train(runner)
    assert not touched.cache_reused and touched.cache_key != hook.cache_key
    assert touched.hypotheses == hook.hypotheses
    cv2.imwrite(img, np.full((96, 128, 3), 200, np.uint8))
    changed = CropVoteHypothesisHook(window=0.5)
    changed.before_train(runner)
    assert changed.cache_key not in (hook.cache_key, touched.cache_key)
    assert not changed.cache_reused
    expected, _ = independent_crop_vote(runner.model, img, 48, 24)
    assert changed.hypotheses[img] == expected
    assert not [f for f in os.listdir(work_dir) if f.endswith('.tmp')]


def test_corrupt_cache_is_replaced(trained):
    runner, _ = trained
    hook = get_hook(runner)
    path = hook.cache_path
    with open(path, 'wb') as f:
        f.write(b'\x00not a torch file')
    again = CropVoteHypothesisHook(window=0.5)
    again.before_train(runner)
    assert not again.cache_reused and again.cache_path == path
    assert again.hypotheses == hook.hypotheses
    data = torch.load(path, weights_only=True)
    assert data['key'] == hook.cache_key and data['hypotheses'] == hook.hypotheses
    assert not [f for f in os.listdir(runner.work_dir) if f.endswith('.tmp')]
    assert 'is unreadable' in read_log(runner)
    # and the rewritten file is reused the next time
    third = CropVoteHypothesisHook(window=0.5)
    third.before_train(runner)
    assert third.cache_reused


def test_global_mode_and_img_scale(trained):
    runner, data_root = trained
    model = runner.model
    paths = sorted(glob.glob(osp.join(data_root, 'JPEGImages', '*.jpg')))
    hook = CropVoteHypothesisHook(mode='global', score_threshold=1.0, top_k=2, batch_size=2)
    hook.before_train(runner)
    model.eval()
    for path in paths:
        rgb = cv2.imread(path)[..., ::-1].copy()
        t = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
        t = F.interpolate(t, size=(224, 224), mode='bilinear', align_corners=False)
        t = (t - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
        with torch.no_grad():
            s = 100 * model.global_class_scores(t)[0]
        keep = [c for c in range(20) if s[c] >= 1.0]
        if len(keep) < 2:
            keep = sorted(torch.topk(s, 2).indices.tolist())
        assert hook.hypotheses[path] == keep
        assert len(keep) >= 2
    assert hook.settings()['mode'] == 'global'

    # img_scale: voting on the image rescaled to a short side of 32 (one 32x32 window
    # per square step), against the same computation on a pre-resized copy
    scaled = CropVoteHypothesisHook(window=32, img_scale=32)
    scaled.before_train(runner)
    real = [p for p in paths if 'real_' in p][0]
    bgr = cv2.imread(real)
    small = cv2.resize(bgr, (round(500 * 32 / 375), 32), interpolation=cv2.INTER_LINEAR)
    tmp = osp.join(runner.work_dir, 'small.png')
    cv2.imwrite(tmp, small)
    expected, _ = independent_crop_vote(model, tmp, 32, 16)
    assert scaled.hypotheses[real] == expected


def test_before_train_iter_and_errors(trained):
    runner, data_root = trained
    hook = get_hook(runner)
    path = sorted(hook.hypotheses)[0]
    sample = SegDataSample(metainfo=dict(img_path=path))
    hook.before_train_iter(runner, 0, dict(inputs=[], data_samples=[sample]))
    assert sample.metainfo['hypothesis'] == hook.hypotheses[path]
    with pytest.raises(KeyError, match='no hypothesis for image'):
        hook.before_train_iter(
            runner, 0,
            dict(inputs=[], data_samples=[SegDataSample(metainfo=dict(img_path='/nowhere.jpg'))]))

    bad = osp.join(data_root, 'JPEGImages', 'gen_000000.jpg')
    with open(bad, 'wb') as f:
        f.write(b'this is no jpeg')
    with pytest.raises(OSError, match='gen_000000.jpg'):
        CropVoteHypothesisHook(window=0.5).before_train(runner)
    os.remove(bad)
    with pytest.raises(OSError, match='gen_000000.jpg'):
        CropVoteHypothesisHook(window=0.5).before_train(runner)


def _stand_in_runner(clip_path, data_root, work_dir):
    """The three attributes the hook reads, around a real model and a real dataset."""
    init_default_scope('mmseg')
    model = MODELS.build(model_cfg(clip_path))
    dataset = DATASETS.build(dataset_cfg(data_root))
    return SimpleNamespace(
        model=model, train_dataloader=SimpleNamespace(dataset=dataset), work_dir=work_dir)


def _dist_worker(rank, world_size, init_file, clip_path, data_root, work_dir, out_dir):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank, world_size=world_size)
    try:
        runner = _stand_in_runner(clip_path, data_root, work_dir)
        first = CropVoteHypothesisHook(window=0.5)
        first.before_train(runner)
        second = CropVoteHypothesisHook(window=0.5)
        second.before_train(runner)
        torch.save(
            dict(
                first=first.hypotheses,
                first_reused=first.cache_reused,
                second=second.hypotheses,
                second_reused=second.cache_reused), osp.join(out_dir, f'{rank}.pth'))
    finally:
        dist.destroy_process_group()


def test_two_ranks_match_one_process(tmp_path, clip_file):
    data_root = make_voc_layout(str(tmp_path / 'voc'), n_generated=2)
    single = CropVoteHypothesisHook(window=0.5)
    single.before_train(_stand_in_runner(clip_file, data_root, str(tmp_path / 'single')))
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    # fork: the children reuse the imported modules (spawn re-imports for ~10 s)
    torch.multiprocessing.start_processes(
        _dist_worker,
        nprocs=2,
        start_method='fork',
        args=(2, str(tmp_path / 'dist_init'), clip_file, data_root, str(tmp_path / 'dist'),
              str(out_dir)))
    for rank in range(2):
        res = torch.load(out_dir / f'{rank}.pth', weights_only=True)
        assert res['first'] == single.hypotheses  # merged shards, on every rank
        assert res['second'] == single.hypotheses
        assert not res['first_reused'] and res['second_reused']
    files = caches(tmp_path / 'dist')
    assert [osp.basename(f) for f in files] == [osp.basename(single.cache_path)]
    assert os.listdir(tmp_path / 'dist') == [osp.basename(files[0])]
