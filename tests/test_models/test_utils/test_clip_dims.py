"""clip_dims: every CLIP number read from the model; unsupported towers refused; a
ViT-L-14-shaped random model gives the derived numbers and runs one forward."""
import pytest
import torch

from mmseg_reclip.models.backbones.clip_vit import CLIPViTBackbone
from mmseg_reclip.models.utils import create_clip
from mmseg_reclip.models.utils.clip_dims import UnsupportedCLIPError, clip_dims, fill_student_dims
from tests.clip_utils import TINY, TINY14, TINY32, save_random_clip

# Published architectures (CLIP paper, Table 20; open_clip's ViT-H-14):
# (D, image width, patch, input size)
ARCHS = {
    'ViT-B-32': (512, 768, 32, 224),
    'ViT-B-16': (512, 768, 16, 224),
    'ViT-L-14': (768, 1024, 14, 224),
    'ViT-L-14-336': (768, 1024, 14, 336),
    'ViT-H-14': (1024, 1280, 14, 224),
}


@pytest.mark.parametrize('name', sorted(ARCHS))
def test_supported_models_from_their_config(name):
    dims = clip_dims(name)
    embed, width, patch, size = ARCHS[name]
    assert (dims.embed_dim, dims.image_width, dims.patch_size,
            dims.image_size) == (embed, width, (patch, patch), (size, size))
    assert dims.pe_grid == (size // patch, size // patch)
    assert clip_dims(dict(model_name=name)) == dims


@pytest.mark.parametrize('name', [TINY, TINY14, TINY32])
def test_config_and_built_model_agree(tmp_path, name):
    path = save_random_clip(str(tmp_path / 'clip.pt'), name)
    model = create_clip(name, path)
    from_model = clip_dims(model)
    from_cfg = clip_dims(name)
    assert from_model == from_cfg.__class__(**{**from_cfg.__dict__, 'model_name': 'CLIP'})
    assert model.visual.positional_embedding.shape == (from_cfg.pe_grid[0] * from_cfg.pe_grid[1] +
                                                       1, from_cfg.image_width)


@pytest.mark.parametrize('name, why', [('ViT-B-16-SigLIP', 'timm image tower'),
                                       ('EVA02-B-16', 'timm image tower'),
                                       ('RN50', 'ResNet image tower'),
                                       ('coca_ViT-B-32', 'attention-pooled'),
                                       ('ViT-L-14-CLIPA', 'non-causal')])
def test_unsupported_models_are_refused_with_the_list(name, why):
    with pytest.raises(UnsupportedCLIPError, match=why) as err:
        clip_dims(name)
    assert 'ViT-L-14-336' in str(err.value) and 'ViT-H-14' in str(err.value)
    with pytest.raises(UnsupportedCLIPError):  # before any weight is read or built
        create_clip(name, None)


def test_quick_gelu_that_contradicts_the_tag_names_both():
    # checked before any download: the LAION weights were trained with GELU
    with pytest.raises(
            ValueError,
            match=r"quick_gelu=True in the config .*'laion2b_s34b_b88k'"
            r'.*quick_gelu=False'):
        create_clip('ViT-B-16', 'laion2b_s34b_b88k', quick_gelu=True)


@pytest.mark.parametrize('config', [
    'configs/maskclip/maskclip_vit-b16_voc.py', 'configs/reclip/reclip_vit-b16_voc.py',
    'configs/reclip/reclip_vit-l14_voc.py'
])
def test_quick_gelu_follows_the_weights_from_the_one_switch(config, tmp_path):
    """``model.clip`` with only ``model_name`` and ``pretrained`` changed picks the right
    activation: from the open_clip tag (OpenAI: QuickGELU, LAION: GELU, no error), and for
    a local file whether the model has OpenAI weights (ViT-H-14 has none)."""
    from mmengine.config import Config

    from mmseg_reclip.models.utils.clip_loader import resolve_quick_gelu
    clip = Config.fromfile(config).model.clip
    name, quick_gelu = clip['model_name'], clip.get('quick_gelu')
    laion = {'ViT-B-16': 'laion2b_s34b_b88k', 'ViT-L-14': 'laion2b_s32b_b82k'}[name]
    assert resolve_quick_gelu(name, 'openai', quick_gelu) is True
    assert resolve_quick_gelu(name, laion, quick_gelu) is False  # no error: derived
    weights = tmp_path / 'weights.pt'
    weights.write_bytes(b'')  # only its existence is read here
    assert resolve_quick_gelu(name, str(weights), quick_gelu) is True
    assert resolve_quick_gelu('ViT-H-14', str(weights), quick_gelu) is False
    assert resolve_quick_gelu(name, str(weights), False) is False  # a file of other weights


def test_student_dims_come_from_the_teacher_clip():
    cfg = fill_student_dims(dict(type='ReCLIPStudentHead'), dict(model_name='ViT-L-14-336'))
    assert cfg['embed_dim'] == 768
    assert cfg['bias_extractor'] == dict(
        type='ReferenceBiasExtractor', pe_channels=1024, pe_grid=(24, 24))
    # explicit values are kept (checked against the teacher when it is inherited)
    kept = fill_student_dims(dict(embed_dim=64), dict(model_name='ViT-B-32'))
    assert kept['embed_dim'] == 64 and kept['bias_extractor']['pe_grid'] == (7, 7)


@pytest.fixture(scope='module')
def vit_l14():
    """A randomly initialised ViT-L-14 (the real architecture), built once and shared by
    the backbone and a stage-1 head as in a segmentor."""
    from mmseg.registry import MODELS

    from mmseg_reclip.models.utils import shared_clip_models
    clip = dict(model_name='ViT-L-14', pretrained=None, quick_gelu=True)
    torch.manual_seed(0)
    with shared_clip_models():
        backbone = CLIPViTBackbone(**clip)
        head = MODELS.build(
            dict(
                type='ReCLIPHead',
                class_names=['cat', 'dog'],
                templates='single',
                query_cache_dir=None,
                show_progress=False,
                bias_extractor=dict(num_context=4),
                text_encoder=dict(type='OpenCLIPTextEncoder', **clip)))
    return backbone, head


def test_vit_l14_derives_its_numbers_and_runs(vit_l14):
    backbone, head = vit_l14
    dims = backbone.dims
    assert (dims.embed_dim, dims.image_width, dims.patch_size, dims.pe_grid, dims.quick_gelu,
            dims.text_width) == (768, 1024, (14, 14), (16, 16), True, 768)
    assert len(backbone.visual.transformer.resblocks) == 24
    # the head's D, the text side and the bias extractor follow the same CLIP
    assert head.in_channels == head.channels == 768
    assert head.text_encoder.dims == dims
    assert head.bias_extractor.pe_proj.weight.shape[:2] == (768, 1024)
    assert head.bias_extractor.context.shape == (4, 768)
    assert head.text_encoder.image_pos_embed.shape == (1024, 16, 16)
    out = backbone(torch.randn(1, 3, 56, 60))[0]  # 60 is padded to 70: 5 patches
    assert out.shape == (1, 768, 4, 5)
    assert torch.allclose(out.norm(dim=1), torch.ones(1, 4, 5), rtol=1e-4)
    with torch.no_grad():
        assert head.bias_extractor((4, 5)).shape == (2, 4, 5)


def test_head_in_channels_that_contradicts_the_clip_names_both(tmp_path):
    from mmseg.registry import MODELS
    path = save_random_clip(str(tmp_path / 'clip.pt'), TINY14)
    text = dict(type='OpenCLIPTextEncoder', model_name=TINY14, pretrained=path)
    head = dict(type='MaskCLIPHead', class_names=['cat'], templates='single', text_encoder=text)
    assert MODELS.build(head).in_channels == 48  # derived
    with pytest.raises(
            ValueError,
            match=r"in_channels=512 in the config but CLIP "
            r"'ViT-Tiny-14-test' has in_channels=48"):
        MODELS.build(dict(head, in_channels=512))
