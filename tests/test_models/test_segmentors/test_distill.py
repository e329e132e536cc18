"""ReCLIP++ distillation: ASPP-V2, the student head's inheritance, the losses' gradients,
the lazily loaded teacher and its checkpoint checks (tiny CLIP, ResNet-18 student)."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmseg.structures import SegDataSample

import mmseg_reclip  # noqa: F401
from mmseg_reclip.models.decode_heads.aspp_v2_head import ASPPV2
from mmseg_reclip.models.losses.distill_losses import feature_guided_l1_loss, mask_guided_ce_loss
from mmseg_reclip.models.segmentors.distiller import valid_region
from tests.distill_utils import build, student_cfg


def samples(n=2, size=(64, 64), hypothesis=((1, 3), (0, 5, 7))):
    out = []
    for i in range(n):
        s = SegDataSample()
        s.set_metainfo(dict(img_shape=size, hypothesis=list(hypothesis[i % len(hypothesis)])))
        out.append(s)
    return out


# ------------------------------------------------------------------------------ ASPP-V2
def test_aspp_v2_shape_dilations_and_sum():
    torch.manual_seed(0)
    aspp = ASPPV2(in_channels=8, channels=6, dilations=(6, 12, 18, 24))
    assert [c.dilation for c in aspp.branches] == [(d, d) for d in (6, 12, 18, 24)]
    assert [c.padding for c in aspp.branches] == [(d, d) for d in (6, 12, 18, 24)]
    assert all(c.kernel_size == (3, 3) for c in aspp.branches)
    x = torch.randn(2, 8, 33, 40)
    out = aspp(x)
    assert out.shape == (2, 6, 33, 40)
    ref = sum(
        F.conv2d(x, c.weight, c.bias, padding=c.dilation, dilation=c.dilation)
        for c in aspp.branches)
    torch.testing.assert_close(out, ref)
    # An impulse reaches exactly the 3x3 taps of every dilation (biases are 0).
    impulse = torch.zeros(1, 8, 61, 61)
    impulse[0, :, 30, 30] = 1
    hit = aspp(impulse)[0].abs().sum(0) > 0
    expected = torch.zeros(61, 61, dtype=torch.bool)
    for d in (6, 12, 18, 24):
        for dy in (-d, 0, d):
            for dx in (-d, 0, d):
                expected[30 + dy, 30 + dx] = True
    assert torch.equal(hit, expected)


def test_aspp_v2_default_channels_in_student_head(files):
    clip, ckpt = files
    model = build(student_cfg(clip, ckpt))
    aspp = model.decode_head.feature_module
    assert isinstance(aspp, ASPPV2)
    assert aspp.dilations == (6, 12, 18, 24)
    assert aspp.branches[0].in_channels == 128 and aspp.channels == 32
    assert model.decode_head.proj.out_channels == 64  # projected to the CLIP space


# ---------------------------------------------------------------------------- inheritance
def test_student_head_inherits_teacher_exactly(files):
    clip, ckpt = files
    model = build(student_cfg(clip, ckpt))
    assert not model.teacher_built
    with pytest.raises(RuntimeError, match='inherited'):
        model.decode_head.classifier(torch.zeros(1, 64, 4, 4))
    model.init_weights()  # builds + loads the teacher, copies its parts
    assert model.teacher_built and bool(model.decode_head.inherited)
    teacher_head = model.teacher.decode_head
    student_head = model.decode_head.eval()
    assert not teacher_head.training
    torch.manual_seed(1)
    for size in [(8, 8), (9, 13), (14, 14)]:
        feats = F.normalize(torch.randn(2, 64, *size), dim=1)
        with torch.no_grad():
            ours = student_head.classifier(feats)
            ref = teacher_head.forward((feats, ))
            bias_ref = teacher_head.bias_extractor(size)
        assert torch.equal(student_head.bias_extractor(size), bias_ref)
        assert torch.equal(ours, ref), (ours - ref).abs().max()
    # A frozen snapshot: later changes to the teacher do not reach the student.
    before = student_head.mask_decoder.conv.weight.clone()
    with torch.no_grad():
        teacher_head.mask_decoder.conv.weight.add_(1)
    assert torch.equal(student_head.mask_decoder.conv.weight, before)


def test_training_steps_leave_the_inherited_decoder_as_the_teacher(files):
    """In train() mode (as the Runner trains), the student's inherited mask decoder still
    normalises with the teacher's running statistics: a training step (loss, backward,
    SGD) changes neither its BN buffers nor its output, which equals the teacher's.
    A decoder frozen by ``requires_grad_(False)`` alone would update its BN statistics
    from every batch and normalise with batch statistics."""
    clip, ckpt = files
    torch.manual_seed(0)
    model = build(student_cfg(clip, ckpt))
    model.init_weights()
    model.train()
    head, teacher_head = model.decode_head, model.teacher.decode_head
    assert head.training and not head.mask_decoder.training
    before = {k: v.clone() for k, v in head.mask_decoder.state_dict().items()}
    teacher_state = teacher_head.mask_decoder.state_dict()
    feats = F.normalize(
        torch.randn(2, 64, 9, 13, generator=torch.Generator().manual_seed(3)), dim=1)
    with torch.no_grad():
        ref = teacher_head.forward((feats, ))
        assert torch.equal(head.classifier(feats), ref)  # train mode, no step yet
    optim = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        losses = model.loss(torch.randn(2, 3, 64, 64), samples(2))
        optim.zero_grad()
        sum(losses.values()).backward()
        optim.step()
    after = head.mask_decoder.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k  # running_mean/var, num_batches_tracked too
        if not k.endswith('num_batches_tracked'):
            assert torch.equal(v, teacher_state[k]), k
    with torch.no_grad():
        assert torch.equal(head.classifier(feats), ref)  # still train mode


def test_inherited_parts_survive_checkpoint_without_teacher(files, tmp_path):
    """A fresh distiller + the student's state dict predicts without building a teacher
    (no CLIP), and the state dict holds no teacher / CLIP tensor."""
    clip, ckpt = files
    model = build(student_cfg(clip, ckpt))
    model.init_weights()
    state = model.state_dict()
    assert not any(k.startswith('teacher') or 'text_encoder' in k or 'visual' in k for k in state)
    assert state['decode_head.inherited']
    fresh = build(student_cfg(clip, str(tmp_path / 'does_not_exist.pth')))
    fresh.load_state_dict(state, strict=True)
    fresh.eval()
    model.eval()
    x = torch.randn(1, 3, 48, 64)
    metas = [dict(img_shape=(48, 64), ori_shape=(48, 64), pad_shape=(48, 64))]
    with torch.no_grad():
        a = fresh.inference(x, metas)
        b = model.inference(x, metas)
    assert not fresh.teacher_built
    assert a.shape == (1, 20, 48, 64)
    assert torch.equal(a, b)


# --------------------------------------------------------------------------------- losses
def test_functional_losses():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 4, 6)
    target = torch.randint(0, 5, (2, 16, 24))
    target[0, :3] = 255
    up = F.interpolate(logits, size=(16, 24), mode='bilinear', align_corners=False)
    torch.testing.assert_close(
        mask_guided_ce_loss(logits, target), F.cross_entropy(up, target, ignore_index=255))
    zero = mask_guided_ce_loss(logits.requires_grad_(), torch.full((2, 16, 24), 255))
    assert zero.item() == 0 and torch.isfinite(zero)
    zero.backward()

    sf = torch.randn(2, 3, 4, 6)
    tf = torch.randn(2, 3, 16, 24)
    sup = F.interpolate(sf, size=(16, 24), mode='bilinear', align_corners=False)
    torch.testing.assert_close(feature_guided_l1_loss(sf, tf), (sup - tf).abs().mean())
    valid = torch.zeros(2, 16, 24, dtype=torch.bool)
    valid[:, :8, :12] = True
    torch.testing.assert_close(
        feature_guided_l1_loss(sf, tf, valid), (sup - tf)[:, :, :8, :12].abs().mean())


def test_valid_region_from_img_shape():
    s = samples(2)
    s[1].set_metainfo(dict(img_shape=(40, 30)))
    mask = valid_region(s, (64, 64), torch.device('cpu'))
    assert mask[0].all() and mask[1, :40, :30].all() and mask[1].sum() == 40 * 30


def _student_grads(model, losses, keep):
    model.zero_grad(set_to_none=True)
    total = sum(v for k, v in losses.items() if any(t in k for t in keep))
    total.backward(retain_graph=True)
    return {n: p.grad.clone() if p.grad is not None else None for n, p in model.named_parameters()}


def test_each_loss_trains_the_student_and_nothing_else(files):
    from mmseg_reclip.engine.optimizers import TrainableOptimWrapperConstructor
    clip, ckpt = files
    torch.manual_seed(0)
    model = build(student_cfg(clip, ckpt))
    model.init_weights()
    model.train()
    teacher = model.teacher
    assert not teacher.training and model.decode_head.training
    x = torch.randn(2, 3, 64, 64)
    ds = samples(2)
    ds[1].set_metainfo(dict(img_shape=(64, 48)))  # padding on the right
    losses = model.loss(x, ds)
    assert set(losses) == {'decode.loss_mask_ce', 'decode.loss_feat_l1', 'decode.loss_text'}
    assert all(torch.isfinite(v) and v.requires_grad for v in losses.values())

    terms = ['loss_mask_ce', 'loss_feat_l1', 'loss_text']
    full = _student_grads(model, losses, terms)
    student = [n for n, p in model.named_parameters() if p.requires_grad]
    assert student and all(full[n] is not None for n in student)
    for term in terms:
        alone = _student_grads(model, losses, [term])
        without = _student_grads(model, losses, [t for t in terms if t != term])
        # Every term reaches the backbone and the ASPP/projection (features not detached).
        for prefix in ('backbone.', 'decode_head.feature_module.', 'decode_head.proj.'):
            names = [n for n in student if n.startswith(prefix)]
            assert any(alone[n] is not None and alone[n].abs().sum() > 0 for n in names), \
                (term, prefix)
        # Removing the term changes the student's gradients.
        assert any(not torch.equal(full[n], without[n]) for n in student), term

    # The teacher and the inherited parts never get a gradient.
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    param_names = {n for n, _ in model.named_parameters()}
    inherited = model.decode_head.inherited_keys()
    assert len(inherited) == 12  # Q, name map, R, PE grid, PE proj (2), conv (2), BN (4)
    tensors = dict(model.decode_head.named_parameters())
    tensors.update(model.decode_head.named_buffers())
    for name in inherited:
        buf = tensors[name]
        assert f'decode_head.{name}' not in param_names or not buf.requires_grad
        assert not buf.requires_grad and buf.grad is None

    # The optimizer sees exactly the student's trainable parameters.
    wrapper = TrainableOptimWrapperConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01)))(
            model)
    in_optim = {id(p) for g in wrapper.optimizer.param_groups for p in g['params']}
    assert in_optim == {id(p) for n, p in model.named_parameters() if p.requires_grad}
    assert not in_optim & {id(p) for p in teacher.parameters()}
    assert not in_optim & {id(b) for b in model.decode_head.buffers()}


def test_loss_weights_are_the_lambdas(files):
    clip, ckpt = files
    cfg = student_cfg(
        clip,
        ckpt,
        loss_decode=[
            dict(type='MaskGuidedCELoss', loss_weight=1.0),
            dict(type='FeatureGuidedL1Loss', loss_weight=1.0),
            dict(type='TextGuidedContrastiveLoss', loss_weight=1.0)
        ])
    models = []
    for c in (cfg, student_cfg(clip, ckpt)):
        torch.manual_seed(0)
        m = build(c)
        m.init_weights()
        models.append(m.train())
    unit, half = models
    x = torch.randn(2, 3, 64, 64)
    a, b = unit.loss(x, samples(2)), half.loss(x, samples(2))
    torch.testing.assert_close(b['decode.loss_mask_ce'], a['decode.loss_mask_ce'])
    torch.testing.assert_close(b['decode.loss_feat_l1'], 0.5 * a['decode.loss_feat_l1'])
    torch.testing.assert_close(b['decode.loss_text'], 0.5 * a['decode.loss_text'])
    # a dropped term (returning 0) would satisfy the ratios above: each must be non-zero
    for key in ('decode.loss_mask_ce', 'decode.loss_feat_l1', 'decode.loss_text'):
        assert a[key].abs() > 1e-4 and torch.isfinite(a[key]), key


def test_global_class_scores_delegate_to_teacher(files):
    clip, ckpt = files
    model = build(student_cfg(clip, ckpt))
    crops = torch.randn(3, 3, 224, 224)
    scores = model.global_class_scores(crops)  # builds the teacher lazily
    assert model.teacher_built
    assert torch.equal(scores, model.teacher.global_class_scores(crops))
    assert scores.shape == (3, 20)


# ------------------------------------------------------------------------------- errors
def test_missing_teacher_checkpoint_is_a_clear_error(files, tmp_path):
    clip, _ = files
    path = str(tmp_path / 'nowhere' / 'iter_20000.pth')
    model = build(student_cfg(clip, path))
    with pytest.raises(FileNotFoundError) as err:
        model.init_weights()
    msg = str(err.value)
    assert osp.abspath(path) in msg and 'tools/train.py configs/reclip/reclip_vit-b16' in msg


def test_teacher_class_mismatch_is_a_clear_error(files):
    clip, ckpt = files
    cfg = student_cfg(clip, ckpt, num_classes=19, class_names='cityscapes19')
    cfg['teacher']['decode_head'].update(num_classes=19, class_names='cityscapes19')
    model = build(cfg)
    with pytest.raises(ValueError, match='20 classes'):
        model.init_weights()


def test_student_shape_mismatch_names_the_field(files):
    clip, ckpt = files
    model = build(student_cfg(clip, ckpt, bias_extractor=dict(pe_channels=768, pe_grid=(14, 14))))
    with pytest.raises(ValueError, match='pe_channels'):
        model.init_weights()


# -------------------------------------------------------------------------------- configs
def test_distill_configs():
    """Every distillation config: settings of docs/method.md §7/§8, and its student builds and
    runs its feature path without any CLIP (backbones shrunk for speed)."""
    import glob

    from mmengine.config import Config
    paths = sorted(glob.glob('configs/reclip/reclip-distill_*.py'))
    datasets = ['voc', 'context', 'ade', 'cityscapes', 'cocostuff27']
    for ds in datasets:
        assert f'configs/reclip/reclip-distill_deeplabv2-r101_{ds}.py' in paths
    crops = dict(voc=512, context=480, ade=512, cityscapes=512, cocostuff27=512, custom=336)
    types = set()
    for path in paths:
        cfg = Config.fromfile(path)
        model = cfg.model
        ds = path.split('_')[-1][:-3] if not path.endswith('_offline.py') else 'voc'
        assert model.type == 'ReCLIPDistiller', path
        assert model.teacher.type == 'ReCLIP', path
        clip = 'vit-l14' if '_vit-l14_' in path else 'vit-b16'  # the teacher's CLIP
        assert model.teacher_checkpoint == f'work_dirs/reclip_{clip}_{ds}/iter_20000.pth'
        assert model.pd_threshold is None
        assert model.teacher.decode_head.num_classes == model.decode_head.num_classes \
            == cfg.num_classes, path
        assert model.teacher.decode_head.class_names == model.decode_head.class_names
        assert model.data_preprocessor.mean == [122.771, 116.746, 104.094]  # CLIP's
        assert [h['type']
                for h in cfg.custom_hooks] == ['CropVoteHypothesisHook', 'DatasetClassCheckHook']
        assert cfg.optim_wrapper.constructor == 'TrainableOptimWrapperConstructor'
        head = model.decode_head
        assert head.feature_module.dilations == (6, 12, 18, 24) and head.channels == 512
        weights = {loss['type']: loss['loss_weight'] for loss in head.loss_decode}
        assert weights == dict(
            MaskGuidedCELoss=1.0, FeatureGuidedL1Loss=0.5, TextGuidedContrastiveLoss=0.5)
        pipeline = cfg.train_dataloader.dataset.dataset.pipeline  # inside StepSeededDataset
        crop = [t for t in pipeline if t['type'] == 'RandomCrop']
        assert crop[0]['crop_size'] == (crops[ds], crops[ds]), path
        assert not any(t['type'] == 'LoadAnnotations' for t in pipeline), path
        backbone = model.backbone
        types.add(backbone.type)
        if backbone.type == 'ResNetV1c':
            assert backbone.strides == (1, 2, 1, 1) and backbone.dilations == (1, 1, 2, 4)
            assert backbone.init_cfg.checkpoint == f'open-mmlab://resnet{backbone.depth}_v1c'
            assert cfg.optim_wrapper.optimizer.type == 'SGD'
            assert cfg.optim_wrapper.optimizer.lr == 0.01
            (poly, ) = cfg.param_scheduler
            assert (poly.type, poly.eta_min, poly.power) == ('PolyLR', 1e-4, 0.9)
            backbone.update(depth=18, base_channels=16, stem_channels=16, norm_cfg=dict(type='BN'))
            head.in_channels = 128
        else:
            assert 'mmpretrain.models' in cfg.custom_imports.imports
            backbone.update(arch='atto')
            model.neck.in_channels = [40, 80, 160, 320]
        backbone.init_cfg = None
        head.update(channels=16)
        if ds == 'custom':  # its class file comes from CLASS_NAMES (test_custom_e2e.py)
            head.class_names = ['cat', ['person', 'people']]
        student = build(model.to_dict())
        assert not student.teacher_built
        with torch.no_grad():
            feats = student.decode_head.forward_features(
                student.extract_feat(torch.randn(1, 3, 64, 64)))
        embed_dim = 768 if clip == 'vit-l14' else 512  # the teacher CLIP's D, derived
        assert feats.shape == (1, embed_dim, 8, 8), path  # stride 8
        torch.testing.assert_close(feats.norm(dim=1), torch.ones(1, 8, 8))
    assert types == {'ResNetV1c', 'mmpretrain.ConvNeXt'}
