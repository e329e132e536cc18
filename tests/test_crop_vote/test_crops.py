"""The crop-vote pre-pass machinery: per-image crops read by DataLoader workers, batched
across images; the hook's precision setting and its announcement (images, crops, ETA)."""
import glob
import os.path as osp

import cv2
import pytest
import torch
import torch.nn.functional as F

import mmseg_reclip  # noqa: F401
from mmseg_reclip.crop_vote.crops import CropVoteCrops, batch_crops, build_crop_loader
from mmseg_reclip.crop_vote.hook import CropVoteHypothesisHook
from mmseg_reclip.crop_vote.vote import window_boxes
from tests.clip_utils import save_random_clip
from tests.crop_vote_utils import build_runner
from tests.data_utils import make_voc_layout

MEAN = torch.tensor([122.771, 116.746, 104.094]).view(3, 1, 1)
STD = torch.tensor([68.501, 66.632, 70.323]).view(3, 1, 1)


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    root = make_voc_layout(str(tmp_path_factory.mktemp('voc')), n_generated=2)
    paths = sorted(glob.glob(osp.join(root, 'JPEGImages', '*.jpg')))
    # a portrait image too (h > w), so that both axes' window counts are exercised
    portrait = osp.join(root, 'portrait.png')
    cv2.imwrite(portrait, cv2.imread(paths[0])[:, :70].transpose(1, 0, 2).copy())
    return paths + [portrait]


def by_hand(path, window, stride, img_scale=None):
    """Crops cut from the cv2 image with numpy slicing, RGB, [n, 3, win, win] uint8."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img_scale is not None:
        h, w = img.shape[:2]
        s = img_scale / min(h, w)
        img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_LINEAR)
    rgb = img[..., ::-1]
    h, w = rgb.shape[:2]
    ys = sorted(set(range(0, h - window + 1, stride)) | {h - window})
    xs = sorted(set(range(0, w - window + 1, stride)) | {w - window})
    crops = [
        torch.from_numpy(rgb[y:y + window, x:x + window].copy()).permute(2, 0, 1) for y in ys
        for x in xs
    ]
    return torch.stack(crops)


@pytest.mark.parametrize('img_scale', [None, 40])
def test_items_and_header_counts(images, img_scale):
    ds = CropVoteCrops(images, window=24, stride=10, img_scale=img_scale)
    for i, path in enumerate(images):
        item = ds[i]
        assert item['path'] == path and item['crops'].dtype == torch.uint8
        assert torch.equal(item['crops'], by_hand(path, 24, 10, img_scale)), path
        assert ds.num_crops(i) == item['crops'].shape[0] > 1  # from the header alone
    glob_ds = CropVoteCrops(images, mode='global')
    assert glob_ds.num_crops(0) == 1 and glob_ds[0]['crops'].shape[0] == 1


def test_workers_give_the_same_items_in_order(images):
    ds = CropVoteCrops(images, window=0.5)
    main = [(it['path'], it['crops']) for it in build_crop_loader(ds, num_workers=0)]
    workers = [(it['path'], it['crops']) for it in build_crop_loader(ds, num_workers=2)]
    assert [p for p, _ in main] == [p for p, _ in workers] == images
    for (_, a), (_, b) in zip(main, workers):
        assert torch.equal(a, b)


@pytest.mark.parametrize('batch_size', [1, 7, 1000])
def test_batches_across_images(images, batch_size):
    ds = CropVoteCrops(images, window=32, stride=16)
    items = [ds[i] for i in range(len(ds))]
    batches = list(batch_crops(iter(items), batch_size, 40, MEAN, STD, torch.device('cpu')))
    assert all(b.shape[0] <= batch_size for b, _ in batches)
    assert all(b.shape[0] == batch_size for b, _ in batches[:-1])
    flat = torch.cat([b for b, _ in batches])
    # independent: each crop resized alone, then normalised
    expected = torch.cat([
        (F.interpolate(it['crops'].float(), size=(40, 40), mode='bilinear', align_corners=False) -
         MEAN) / STD for it in items
    ])
    assert torch.equal(flat, expected)
    owners = [o for _, os_ in batches for o in os_]
    for it in items:  # every image's crops accounted for exactly once, in order
        mine = [o for o in owners if o[0] == it['path']]
        assert sum(o[2] for o in mine) == it['crops'].shape[0] == mine[0][1]
    for b, os_ in batches:
        assert sum(o[2] for o in os_) == b.shape[0]


def test_hook_arg_checks():
    with pytest.raises(ValueError, match='num_workers'):
        CropVoteHypothesisHook(num_workers=-1)
    with pytest.raises(ValueError, match='precision'):
        CropVoteHypothesisHook(precision='int8')


@pytest.fixture(scope='module')
def runner(tmp_path_factory):
    root = tmp_path_factory.mktemp('cv_amp')
    clip = save_random_clip(str(root / 'tiny.pt'))
    data_root = make_voc_layout(str(root / 'voc'), n_generated=1)
    runner = build_runner(
        root / 'work',
        data_root,
        clip,
        hook=dict(window=0.5, batch_size=5, num_workers=2),
        max_iters=1)
    runner.train()
    return runner


def test_hook_precision_auto_key_and_announcement(runner, capsys):
    from mmengine.optim import OptimWrapper

    from mmseg_reclip.engine.optimizers import DeviceAmpOptimWrapper
    fp32 = [h for h in runner.hooks if isinstance(h, CropVoteHypothesisHook)][0]
    assert fp32.cast_dtype is None and 'precision' not in fp32.settings()
    log = open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    # 2 images, window 0.5 of the short side, stride half: 5x4 (96x128) + real photo
    n_crops = sum(len(window_boxes(*cv2.imread(p).shape[:2], 0.5)) for p in fp32.hypotheses)
    assert f'2 images, {n_crops} crops' in log and 'ETA' in log and 'crops/s' in log

    # 'auto' follows an AMP optim wrapper: bf16 votes, another cache key
    params = [p for p in runner.model.parameters() if p.requires_grad]
    saved = runner.optim_wrapper
    try:
        runner.optim_wrapper = DeviceAmpOptimWrapper(
            optimizer=torch.optim.SGD(params, lr=0.01), dtype='bfloat16')
        amp = CropVoteHypothesisHook(window=0.5, batch_size=5, num_workers=0)
        amp.before_train(runner)
        assert amp.cast_dtype == torch.bfloat16
        assert amp.settings()['precision'] == 'torch.bfloat16'
        assert amp.cache_key != fp32.cache_key and not amp.cache_reused
        assert set(amp.hypotheses) == set(fp32.hypotheses)
        # explicit fp32 ignores the wrapper and reuses the fp32 cache
        forced = CropVoteHypothesisHook(window=0.5, batch_size=5, precision='fp32')
        forced.before_train(runner)
        assert forced.cache_reused and forced.cache_key == fp32.cache_key
        runner.optim_wrapper = OptimWrapper(optimizer=torch.optim.SGD(params, lr=0.01))
        plain = CropVoteHypothesisHook(window=0.5, batch_size=5)
        plain.before_train(runner)
        assert plain.cast_dtype is None and plain.cache_reused
    finally:
        runner.optim_wrapper = saved


def test_unreadable_image_error_names_the_file_and_the_fix(tmp_path):
    """The pre-pass counts crops from the image header: a corrupt file is an error that
    names it and says what to do."""
    bad = tmp_path / 'bad photo.jpg'
    bad.write_bytes(b'not a JPEG at all')
    ds = CropVoteCrops([str(bad)], window=24, stride=10, img_scale=(64, 32))
    with pytest.raises(OSError, match=r"bad photo.jpg.*replace it with an intact copy, or delete"):
        ds.num_crops(0)
