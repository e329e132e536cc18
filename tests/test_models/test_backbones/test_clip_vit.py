"""Dense MaskCLIP features against an independent computation with open_clip's modules."""
import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.model import resize_pos_embed

from mmseg_reclip.models.backbones import CLIPViTBackbone
from tests.clip_utils import save_random_clip


@pytest.fixture(scope='module')
def vitb16_file(tmp_path_factory):
    return save_random_clip(str(tmp_path_factory.mktemp('clip') / 'vitb16.pt'), 'ViT-B-16')


def reference_dense(state_dict, size, img):
    """open_clip's own ViT at `size`, with the last block forced to attend to itself only.

    With attention restricted to the diagonal, softmax is exactly one-hot, so the block
    computes x + out_proj(V(ln_1 x)) followed by its MLP: the MaskCLIP value path.
    """
    # QuickGELU: a ViT-B-16 weights file is taken to hold OpenAI's weights
    model = open_clip.create_model('ViT-B-16', force_image_size=size, force_quick_gelu=True)
    sd = dict(state_dict)
    resize_pos_embed(sd, model, antialias=False)
    model.load_state_dict(sd)
    model.eval()
    visual = model.visual
    visual.output_tokens = True
    length = 1 + (size[0] // 16) * (size[1] // 16)
    eye_mask = torch.full((length, length), float('-inf'))
    eye_mask.fill_diagonal_(0.0)

    def force_self_attention(module, args, kwargs):
        kwargs['attn_mask'] = eye_mask
        return args, kwargs

    visual.transformer.resblocks[-1].register_forward_pre_hook(
        force_self_attention, with_kwargs=True)
    with torch.no_grad():
        _, tokens = visual(img)
        feats = F.normalize(tokens @ visual.proj, dim=-1)
    h, w = size[0] // 16, size[1] // 16
    return feats.transpose(1, 2).reshape(img.shape[0], -1, h, w)


@pytest.mark.parametrize('size', [(96, 160), (224, 336)])
def test_dense_features_match_open_clip(vitb16_file, size):
    backbone = CLIPViTBackbone('ViT-B-16', pretrained=vitb16_file)
    torch.manual_seed(1)
    img = torch.randn(2, 3, *size)
    (feats, ) = backbone(img)
    assert feats.shape == (2, 512, size[0] // 16, size[1] // 16)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(2, size[0] // 16, size[1] // 16))
    ref = reference_dense(torch.load(vitb16_file), size, img)
    assert (feats - ref).abs().max() <= 1e-5


def test_backbone_is_frozen_and_unsaved(vitb16_file):
    backbone = CLIPViTBackbone('ViT-B-16', pretrained=vitb16_file)
    backbone.train()
    assert not any(p.requires_grad for p in backbone.parameters())
    assert not backbone.visual.training
    assert backbone.state_dict() == {}
    # A checkpoint without the frozen weights loads strictly.
    backbone.load_state_dict({}, strict=True)


def test_input_padded_to_patch_multiple(vitb16_file):
    backbone = CLIPViTBackbone('ViT-B-16', pretrained=vitb16_file)
    img = torch.randn(1, 3, 100, 90)
    (feats, ) = backbone(img)
    padded = F.pad(img, (0, 6, 0, 12))
    (ref, ) = backbone(padded)
    assert feats.shape[-2:] == (7, 6)
    torch.testing.assert_close(feats, ref)


def test_global_embedding_is_clip_encode_image(vitb16_file):
    backbone = CLIPViTBackbone('ViT-B-16', pretrained=vitb16_file)
    model = open_clip.create_model(
        'ViT-B-16', pretrained=vitb16_file, force_quick_gelu=True).eval()  # as the backbone
    img = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ref = model.encode_image(img, normalize=True)
    torch.testing.assert_close(backbone.encode_image(img), ref)


def test_loader_errors(tmp_path):
    with pytest.raises(ValueError, match='ViT-B-16'):
        CLIPViTBackbone('ViT-B-61', pretrained=None)
    missing = str(tmp_path / 'nope' / 'clip.pt')
    with pytest.raises(FileNotFoundError, match='nope/clip.pt'):
        CLIPViTBackbone('ViT-B-16', pretrained=missing)
    with pytest.raises(ValueError, match='openai'):
        CLIPViTBackbone('ViT-B-16', pretrained='not-a-tag')
