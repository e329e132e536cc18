"""OpenCLIPTextEncoder against independent computations with open_clip's own model."""
import open_clip
import pytest
import torch
import torch.nn.functional as F

from mmseg_reclip.models.text_encoders import OpenCLIPTextEncoder
from tests.clip_utils import TINY, save_random_clip

NAMES = ['dining table', 'cat']
TEMPLATES = ['a photo of a {}.', 'there is a {} in the scene.', 'a bad photo of the {}.']


@pytest.fixture(scope='module')
def tiny_file(tmp_path_factory):
    return save_random_clip(str(tmp_path_factory.mktemp('clip') / 'tiny.pt'), TINY)


@pytest.fixture(scope='module')
def vitb16_file(tmp_path_factory):
    return save_random_clip(str(tmp_path_factory.mktemp('clip') / 'vitb16.pt'), 'ViT-B-16')


@pytest.fixture(scope='module')
def tiny_encoder(tiny_file):
    return OpenCLIPTextEncoder(TINY, pretrained=tiny_file)


@pytest.fixture(scope='module')
def vitb16_encoder(vitb16_file):
    return OpenCLIPTextEncoder('ViT-B-16', pretrained=vitb16_file)


def ade_names(num):
    try:
        from mmseg_reclip.datasets.class_names import get_class_names
        names = [n[0] for n in get_class_names('ade150')]
    except (ImportError, ValueError):
        names = []
    generated = [f'thing number {i} of the {"very " * (i % 4)}long list' for i in range(num)]
    return (names + generated)[:num]


@pytest.mark.parametrize('model', ['tiny', 'vitb16'])
def test_build_queries_matches_open_clip(model, request):
    encoder = request.getfixturevalue(f'{model}_encoder')
    model_name = TINY if model == 'tiny' else 'ViT-B-16'
    # QuickGELU: a ViT-B-16 weights file is taken to hold OpenAI's weights (the tiny
    # model's config asks for it anyway)
    clip = open_clip.create_model(
        model_name, pretrained=request.getfixturevalue(f'{model}_file'),
        force_quick_gelu=True).eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    with torch.no_grad():
        expected = []
        for name in NAMES:
            feats = [
                F.normalize(clip.encode_text(tokenizer([t.format(name)]))[0], dim=-1)
                for t in TEMPLATES
            ]
            expected.append(F.normalize(torch.stack(feats).mean(0), dim=-1))
        expected = torch.stack(expected)
    queries = encoder.build_queries(NAMES, TEMPLATES)
    assert queries.shape == (len(NAMES), clip.text_projection.shape[1])
    assert (queries - expected).abs().max() <= 1e-5
    # not a degenerate case: the two names differ
    assert (expected[0] - expected[1]).abs().max() > 1e-2


@pytest.mark.parametrize('mode', ['eot', 'released'])
@pytest.mark.parametrize('num_context', [73, 8])
def test_shared_prefix_equals_naive_tiny(tiny_encoder, mode, num_context):
    names = ade_names(150)
    torch.manual_seed(num_context)
    context = 0.1 * torch.randn(num_context, tiny_encoder.width)
    tokens, eot = tiny_encoder.name_tokens(names, num_context, mode)
    with torch.no_grad():
        fast = tiny_encoder.encode_context_prompts(context, tokens, eot)
        naive = tiny_encoder.encode_context_prompts_naive(context, tokens, eot)
    assert fast.shape == (150, tiny_encoder.embed_dim)
    assert (fast - naive).abs().max() <= 1e-5
    assert naive.std(0).mean() > 1e-3  # classes differ


@pytest.mark.parametrize('mode', ['eot', 'released'])
def test_shared_prefix_equals_naive_vitb16(vitb16_encoder, mode):
    names = ['airplane', 'hippopotamus', 'rhinoceros', 'tv monitor', 'potted plant']
    torch.manual_seed(0)
    context = 0.02 * torch.randn(73, vitb16_encoder.width)
    tokens, eot = vitb16_encoder.name_tokens(names, 73, mode)
    with torch.no_grad():
        fast = vitb16_encoder.encode_context_prompts(context, tokens, eot)
        naive = vitb16_encoder.encode_context_prompts_naive(context, tokens, eot)
    assert fast.shape == (5, 512)
    assert (fast - naive).abs().max() <= 1e-5


def test_context_prompts_gradient(tiny_encoder):
    """The context receives the same gradient through both encodings."""
    names = ade_names(6)
    tokens, eot = tiny_encoder.name_tokens(names, 8, 'eot')
    grads = []
    for encode in (tiny_encoder.encode_context_prompts, tiny_encoder.encode_context_prompts_naive):
        context = (0.1 *
                   torch.randn(8, tiny_encoder.width, generator=torch.Generator().manual_seed(1)))
        context.requires_grad_(True)
        encode(context, tokens, eot).square().sum().backward()
        grads.append(context.grad)
    scale = grads[0].abs().max()
    assert scale > 0
    assert (grads[0] - grads[1]).abs().max() <= 1e-5 * scale


def test_name_tokens_released_rule(tiny_encoder):
    tokenizer = open_clip.get_tokenizer(TINY)
    sot, eot_id = tokenizer.sot_token_id, tokenizer.eot_token_id
    names = ['airplane', 'dining table', 'hippopotamus in water']
    rows = [tokenizer([n])[0].tolist() for n in names]
    # by hand: the BPE tokens between SOS and EOT
    bpe = [row[1:row.index(eot_id)] for row in rows]
    assert [row[0] for row in rows] == [sot] * 3
    assert [len(b) for b in bpe] == [1, 2, 5]

    m = 73  # 77 - 1 - 73 = 3 slots after the context
    tokens, eot = tiny_encoder.name_tokens(names, m, 'released')
    assert tokens.shape == (3, 3)
    expected_tokens = [row[1:4] for row in rows]
    assert tokens.tolist() == expected_tokens
    # 1-token name: [name, EOT, 0] -> EOT at slot 1; 2 tokens: [a, b, EOT] -> slot 2;
    # 5 tokens: no EOT among the 3 kept tokens, the largest BPE id wins.
    expected = []
    for slots in expected_tokens:
        best = max(range(3), key=lambda i: slots[i])
        expected.append(1 + m + best)
    assert expected[:2] == [1 + m + 1, 1 + m + 2]
    assert eot.tolist() == expected
    assert expected_tokens[2][expected[2] - 1 - m] != eot_id  # not an EOT token

    # More room: every prompt keeps its EOT, the feature is taken there.
    tokens, eot = tiny_encoder.name_tokens(names, 8, 'released')
    assert tokens.shape == (3, 68)
    assert eot.tolist() == [1 + 8 + len(b) for b in bpe]
    assert all(tokens[i, len(b)] == eot_id for i, b in enumerate(bpe))

    # 'eot' mode keeps an EOT in the 3 slots: the 5-token name is cut to 2 + EOT.
    tokens, eot = tiny_encoder.name_tokens(names, m, 'eot')
    assert eot.tolist() == [1 + m + 1, 1 + m + 2, 1 + m + 2]
    assert tokens[2].tolist() == bpe[2][:2] + [eot_id]
    assert tokens[0].tolist() == [bpe[0][0], eot_id, 0]

    with pytest.raises(ValueError, match='room'):
        tiny_encoder.name_tokens(names, 76, 'released')
    with pytest.raises(ValueError, match='released'):
        tiny_encoder.name_tokens(names, 8, 'last')
