"""A trained head knows its classes: the class names (and template set) travel in the
checkpoint, and loading a checkpoint of another class set is an error on every load path
(``load_state_dict``, mmengine's ``load_checkpoint`` used by the Runner / ``load_from``,
``mmseg.apis.init_model``, the distiller's teacher checkpoint)."""
import copy
import logging
import re

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import load_checkpoint
from mmseg.registry import MODELS

import mmseg_reclip  # noqa: F401
from mmseg_reclip.models.utils.class_set import (ClassSetMismatchError, decode_class_set,
                                                 encode_class_set)
from tests.clip_utils import TINY

NAMES4 = ['cat', 'dining table', 'hippopotamus', ['tv monitor', 'television']]
OTHER4 = ['dog', 'dining table', 'hippopotamus', ['tv monitor', 'television']]
NAMES3 = ['cat', 'dining table', 'hippopotamus']
MEAN = [122.771, 116.746, 104.094]
STD = [68.501, 66.632, 70.323]


def model_cfg(clip, names=NAMES4, templates='single', head='ReCLIPHead'):
    head_cfg = dict(
        type=head,
        class_names=names,
        num_classes=len(names),
        in_channels=64,
        templates=templates,
        show_progress=False,
        query_cache_dir=None,
        text_encoder=dict(type='OpenCLIPTextEncoder', model_name=TINY, pretrained=clip))
    if head == 'ReCLIPHead':
        head_cfg.update(bias_extractor=dict(num_context=4), norm_cfg=dict(type='BN'))
    return dict(
        type='ReCLIP',
        data_preprocessor=dict(
            type='SegDataPreProcessor', mean=MEAN, std=STD, bgr_to_rgb=True, size_divisor=16),
        backbone=dict(type='CLIPViTBackbone', model_name=TINY, pretrained=clip),
        decode_head=head_cfg,
        test_cfg=dict(mode='whole'))


def build(cfg):
    init_default_scope('mmseg')
    return MODELS.build(ConfigDict(copy.deepcopy(cfg)))


@pytest.fixture(scope='module')
def ckpt(clip_file, tmp_path_factory):
    """A trained-looking 4-class checkpoint (mmengine format, built queries)."""
    torch.manual_seed(0)
    model = build(model_cfg(clip_file))
    model.init_weights()
    with torch.no_grad():
        model.decode_head.bias_extractor.context.normal_(0, 0.02)
    path = str(tmp_path_factory.mktemp('ckpt') / 'iter_10.pth')
    torch.save(dict(meta=dict(), state_dict=model.state_dict()), path)
    return path


def test_class_set_is_saved_and_safe_to_load(ckpt):
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    record = decode_class_set(state['decode_head._extra_state'])
    assert record['class_names'] == [['cat'], ['dining table'], ['hippopotamus'],
                                     ['tv monitor', 'television']]
    assert record['templates'].startswith('single-')
    assert state['decode_head._extra_state'].dtype == torch.uint8
    # non-ASCII names survive the round trip
    names = [['café'], ['日本']]
    assert decode_class_set(encode_class_set(names, None))['class_names'] == names


def test_same_class_set_loads_exactly(clip_file, ckpt):
    model = build(model_cfg(clip_file))
    load_checkpoint(model, ckpt, map_location='cpu')
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    assert torch.equal(model.decode_head.bias_extractor.context,
                       state['decode_head.classifier.bias_extractor.context'])
    assert bool(model.decode_head.query_ready)
    assert torch.equal(model.decode_head.queries(), state['decode_head.query_embeds'])


@pytest.mark.parametrize('names', [OTHER4, NAMES3], ids=['same-count', 'fewer'])
def test_other_class_set_is_an_error_naming_both_lists(clip_file, ckpt, names):
    model = build(model_cfg(clip_file, names=names))
    before = model.decode_head.query_embeds.clone()
    with pytest.raises(ClassSetMismatchError) as err:
        load_checkpoint(model, ckpt, map_location='cpu')  # the Runner's / load_from path
    msg = str(err.value)
    assert 'checkpoint: [cat, dining table, hippopotamus, tv monitor/television] (4 classes)'\
        in msg
    assert f'config:     [{names[0]}, dining table, hippopotamus' in msg
    # refused before anything was copied; never "ready" with unbuilt queries
    assert torch.equal(model.decode_head.query_embeds, before)
    assert not bool(model.decode_head.query_ready)


def test_same_classes_in_another_order_are_an_error(clip_file, ckpt):
    """Same names, other order: class ids would silently mean other classes."""
    names = [NAMES4[1], NAMES4[0]] + NAMES4[2:]
    model = build(model_cfg(clip_file, names=names))
    with pytest.raises(ClassSetMismatchError, match='first difference at class 0'):
        load_checkpoint(model, ckpt, map_location='cpu')
    assert not bool(model.decode_head.query_ready)


def test_init_model_refuses_other_classes(clip_file, ckpt):
    from mmseg.apis import init_model
    cfg = Config(dict(model=model_cfg(clip_file, names=OTHER4)))
    with pytest.raises(ClassSetMismatchError, match='other classes'):
        init_model(cfg, ckpt, device='cpu')
    model = init_model(Config(dict(model=model_cfg(clip_file))), ckpt, device='cpu')
    assert bool(model.decode_head.query_ready)


def test_other_template_set_is_an_error(clip_file, ckpt):
    model = build(model_cfg(clip_file, templates=['a photo of a {}.', 'a {}.']))
    with pytest.raises(ClassSetMismatchError, match="template set 'single-"):
        load_checkpoint(model, ckpt, map_location='cpu')


def test_old_checkpoint_without_names_loads_with_one_warning(clip_file, ckpt, tmp_path):
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    del state['decode_head._extra_state']
    old = str(tmp_path / 'old.pth')
    torch.save(dict(state_dict=state), old)
    model = build(model_cfg(clip_file))
    logger = MMLogger.get_current_instance()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        load_checkpoint(model, old, map_location='cpu', logger='current')
    finally:
        logger.removeHandler(handler)
    text = [r.getMessage() for r in records]
    warned = [t for t in text if 'stores no class names' in t]
    assert len(warned) == 1 and '\n' not in warned[0]
    assert not any('_extra_state' in t for t in text)  # no missing-key noise for it
    assert torch.equal(model.decode_head.query_embeds, state['decode_head.query_embeds'])
    # a different class count is still refused (the 20-vs-19 case)
    with pytest.raises(ClassSetMismatchError, match=r'query_embeds: checkpoint \(5, 64\)'):
        load_checkpoint(build(model_cfg(clip_file, names=NAMES3)), old, map_location='cpu')


def test_query_ready_only_for_loaded_or_built_queries(clip_file, ckpt):
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    assert bool(state['decode_head.query_ready'])
    # a checkpoint without Q (converted from the released code) but query_ready=True:
    # the fresh head has not built Q, so it must not claim it is ready ...
    partial = {k: v for k, v in state.items() if k != 'decode_head.query_embeds'}
    model = build(model_cfg(clip_file))
    model.load_state_dict(partial, strict=False)
    assert not bool(model.decode_head.query_ready)
    assert model.decode_head.queries().abs().sum() > 0  # built on first use
    torch.testing.assert_close(model.decode_head.queries(), state['decode_head.query_embeds'])
    # ... and a head that built its Q keeps it
    model = build(model_cfg(clip_file))
    model.init_weights()
    built = model.decode_head.query_embeds.clone()
    model.load_state_dict(partial, strict=False)
    assert bool(model.decode_head.query_ready)
    assert torch.equal(model.decode_head.query_embeds, built)


def test_maskclip_head_checks_too(clip_file, tmp_path):
    model = build(model_cfg(clip_file, head='MaskCLIPHead'))
    model.init_weights()
    path = str(tmp_path / 'maskclip.pth')
    torch.save(dict(state_dict=model.state_dict()), path)
    with pytest.raises(ClassSetMismatchError, match='other classes'):
        load_checkpoint(build(model_cfg(clip_file, names=OTHER4, head='MaskCLIPHead')), path)


# -- distillation -------------------------------------------------------------------------
def student_cfg(clip, teacher_ckpt, names=NAMES4, teacher_names=NAMES4):
    return dict(
        type='ReCLIPDistiller',
        teacher=model_cfg(clip, names=teacher_names),
        teacher_checkpoint=teacher_ckpt,
        data_preprocessor=model_cfg(clip)['data_preprocessor'],
        backbone=dict(
            type='ResNetV1c',
            depth=18,
            base_channels=16,
            stem_channels=16,
            out_indices=(0, 1, 2, 3),
            dilations=(1, 1, 2, 4),
            strides=(1, 2, 1, 1),
            norm_cfg=dict(type='BN'),
            contract_dilation=True),
        decode_head=dict(
            type='ReCLIPStudentHead',
            in_channels=128,
            in_index=3,
            channels=32,
            num_classes=len(names),
            class_names=names,
            embed_dim=64,
            bias_extractor=dict(pe_channels=64, pe_grid=(14, 14))),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))


def test_teacher_checkpoint_of_other_classes_names_file_and_lists(clip_file, ckpt):
    model = build(student_cfg(clip_file, ckpt, names=OTHER4, teacher_names=OTHER4))
    with pytest.raises(ClassSetMismatchError) as err:
        model.init_weights()
    msg = str(err.value)
    assert ckpt in msg and 'checkpoint: [cat,' in msg and 'config:     [dog,' in msg


@MODELS.register_module(force=True)
class _RecordBatchForTest(torch.nn.Module):
    """A distillation loss that keeps the DistillBatch it is given (and adds 0)."""

    needs = ('hypothesis', )
    loss_name = 'loss_record'

    def __init__(self):
        super().__init__()
        self.batches = []

    def forward(self, batch):
        self.batches.append(batch)
        return batch.feats.sum() * 0


def recorded_batch(clip, teacher_ckpt, names):
    """The DistillBatch the student's losses get in one training step."""
    from mmseg.structures import SegDataSample
    cfg = student_cfg(clip, teacher_ckpt, names=names, teacher_names=names)
    cfg['decode_head']['loss_decode'] = [
        dict(type='TextGuidedContrastiveLoss', loss_weight=0.5),
        dict(type='_RecordBatchForTest')
    ]
    torch.manual_seed(0)
    model = build(cfg)
    model.init_weights()
    model.train()
    samples = []
    for hypothesis in ([0, 2], [1, 2]):
        sample = SegDataSample()
        sample.set_metainfo(dict(img_shape=(64, 64), hypothesis=hypothesis))
        samples.append(sample)
    losses = model.loss(torch.randn(2, 3, 64, 64), samples)
    (batch, ) = model.decode_head.losses[1].batches
    return model, batch, losses


def test_student_losses_get_the_teachers_name_map(clip_file, ckpt, tmp_path):
    """With synonyms the student's losses read the teacher's name map; with one name per
    class, None (no identity check, no device->host sync per step), as the teacher."""
    from mmseg_reclip.models.losses.contrastive_loss import reclip_contrastive_loss
    model, batch, losses = recorded_batch(clip_file, ckpt, NAMES4)
    teacher_map = model.teacher.decode_head.name_map
    assert teacher_map is not None and torch.equal(batch.name_map, teacher_map)
    expected = 0.5 * reclip_contrastive_loss(batch.feats, batch.masks, batch.queries,
                                             batch.targets.hypothesis, teacher_map)
    torch.testing.assert_close(losses['decode.loss_text'], expected, rtol=0, atol=0)
    # one name per class
    teacher = build(model_cfg(clip_file, names=NAMES3))
    teacher.init_weights()
    path = str(tmp_path / 'teacher3.pth')
    torch.save(dict(state_dict=teacher.state_dict()), path)
    model, batch, _ = recorded_batch(clip_file, path, NAMES3)
    assert model.teacher.decode_head.name_map is None and batch.name_map is None


def test_distilled_checkpoint_carries_the_class_set(clip_file, ckpt, tmp_path):
    model = build(student_cfg(clip_file, ckpt))
    model.init_weights()
    state = model.state_dict()
    record = decode_class_set(state['decode_head._extra_state'])
    assert record['class_names'][0] == ['cat']
    assert record['templates'] == model.teacher.decode_head.templates_id
    path = str(tmp_path / 'student.pth')
    torch.save(dict(state_dict=state), path)
    # tools/test.py route: a fresh student (no teacher) loads it ...
    fresh = build(student_cfg(clip_file, None))
    load_checkpoint(fresh, path, map_location='cpu')
    assert bool(fresh.decode_head.inherited)
    # ... a student configured for other classes refuses it
    other = build(student_cfg(clip_file, None, names=OTHER4, teacher_names=OTHER4))
    with pytest.raises(ClassSetMismatchError, match='other classes'):
        load_checkpoint(other, path, map_location='cpu')


# -- the real tools/test.py ---------------------------------------------------------------
def test_tools_test_refuses_a_checkpoint_of_other_classes(clip_file, tmp_path):
    """tools/test.py CONFIG CKPT with a VOC checkpoint and a config whose 20 class names
    differ: a clear error naming both lists, no mIoU."""
    from tests.clip_utils import small_data_options, tiny_clip_options
    from tests.data_utils import make_voc_layout
    from tests.tool_utils import run_tool
    config = 'configs/reclip/reclip_vit-b16_voc.py'
    opts = tiny_clip_options(clip_file) + ['model.decode_head.query_cache_dir=None']
    cfg = Config.fromfile(config)  # the same model as `opts` give tools/test.py
    cfg.model.backbone.update(model_name=TINY, pretrained=clip_file)
    cfg.model.decode_head.update(in_channels=64, templates='single', query_cache_dir=None)
    cfg.model.decode_head.text_encoder.update(model_name=TINY, pretrained=clip_file)
    model = build(cfg.model)
    model.init_weights()
    ckpt = str(tmp_path / 'voc.pth')
    torch.save(dict(meta=dict(), state_dict=model.state_dict()), ckpt)
    data = make_voc_layout(str(tmp_path / 'voc'), n_generated=1)
    other = '[' + ','.join(f'thing{i}' for i in range(20)) + ']'
    proc = run_tool(
        ['tools/test.py', config, ckpt, '--work-dir',
         str(tmp_path / 'wd'), '--cfg-options'] + opts + small_data_options(data, ('test', )) +
        [f'model.decode_head.class_names={other}'],
        check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert 'error: The checkpoint was trained for other classes' in log  # one line, no traceback
    assert 'checkpoint: [airplane, bicycle, bird' in log
    assert 'config:     [thing0, thing1' in log
    assert not re.search(r'mIoU: \d', log)  # nothing was evaluated


def test_student_never_inherited_with_missing_tensors(clip_file, ckpt, tmp_path):
    model = build(student_cfg(clip_file, ckpt))
    model.init_weights()
    state = {
        k: v
        for k, v in model.state_dict().items()
        if k != 'decode_head.classifier.bias_extractor.reference'
    }
    fresh = build(student_cfg(clip_file, None))
    with pytest.raises(ValueError, match=r"lacks \['classifier.bias_extractor.reference'\]"):
        fresh.load_state_dict(state, strict=False)
    assert not bool(fresh.decode_head.inherited)
