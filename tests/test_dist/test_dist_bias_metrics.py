"""The bias metrics under dist_test.sh (2 gloo processes on CPU): the per-sample states
gathered from both ranks give exactly the single-process scores."""
import glob
import json
from pathlib import Path

from tests.test_dist.dist_utils import free_port, run_script
from tests.tool_utils import run_tool

EVALUATORS = """test_evaluator = [
    dict(type='IoUMetric', iou_metrics=['mIoU']),
    dict(type='ClassPreferenceMetric'),
    dict(type='SpacePreferenceMetric', bins=(0.0, 0.25, 0.5, 0.75, 1.0)),
]"""


def _metrics(work_dir: Path) -> dict:
    found = glob.glob(str(work_dir / '*' / '*.json'))
    assert len(found) == 1, found
    # mmengine's LoggerHook dumps this file from every rank at once (same path, same
    # metrics, different timings): two concurrent 'w' writes can leave the longer tail
    # after the shorter, complete object, so read the first complete object.
    with open(found[0]) as f:
        return json.JSONDecoder().raw_decode(f.read())[0]


def test_dist_bias_metrics_match_single_process(dist_assets, tmp_path):
    clip, data = dist_assets['clip'], dist_assets['data']
    base = str(
        Path(__file__).resolve().parents[2] / 'configs' / 'maskclip' / 'maskclip_vit-b16_voc.py')
    cfg = tmp_path / 'maskclip_bias.py'
    cfg.write_text(f"""_base_ = [{base!r}]
model = dict(backbone=dict(model_name='ViT-Tiny-16-test', pretrained={clip!r}),
             decode_head=dict(in_channels=64, templates='single',
                              text_encoder=dict(model_name='ViT-Tiny-16-test',
                                                pretrained={clip!r})))
test_dataloader = dict(num_workers=0, persistent_workers=False,
                       dataset=dict(data_root={data!r}))
{EVALUATORS}
""")
    run_tool(['tools/test.py', str(cfg), '--work-dir', str(tmp_path / 'wd1')])
    two = run_script(
        ['tools/dist_test.sh',
         str(cfg), 'none', '2', '--work-dir',
         str(tmp_path / 'wd2')],
        env=dict(PORT=str(free_port())))
    assert 'Distributed launcher: pytorch' in two.stdout
    one, two = _metrics(tmp_path / 'wd1'), _metrics(tmp_path / 'wd2')
    for key in ('class_pref', 'class_pref_per_class', 'class_pref_confused', 'space_pref',
                'space_pref_curve'):
        assert one[key] == two[key], key
    # Every one of the 4 images contributed objects (none lost or duplicated by the
    # gather): the object count equals an independent count on the label files.
    assert sum(one['space_pref_curve']['objects']) == _count_objects(data)


def _count_objects(data_root: str) -> int:
    import numpy as np
    from PIL import Image
    from scipy import ndimage
    total = 0
    for path in sorted(glob.glob(data_root + '/SegmentationClass/*.png')):
        label = np.array(Image.open(path)).astype(np.int64)
        label = np.where(label == 0, 255, label - 1)  # reduce_zero_label
        label[label == 254] = 255
        for c in np.unique(label[label != 255]):
            total += ndimage.label(label == c, structure=np.ones((3, 3)))[1]
    return total
