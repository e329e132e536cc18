"""LearnableQueryReCLIPHead (paper Table IV, docs/method.md §11.4): Q from a learnable
CoOp prompt against the naive full-prompt text encoding, gradients, caching."""
import torch
import torch.nn.functional as F

import mmseg_reclip  # noqa: F401
from tests.experiment_utils import C, D, build_head, loop_query_logits, random_feats


def lq_head(clip_file):
    head = build_head(
        clip_file, type='LearnableQueryReCLIPHead', query_num_context=3, query_ctx_init='normal')
    with torch.no_grad():
        head.query_context.normal_(0, 0.05, generator=torch.Generator().manual_seed(7))
    return head


def naive_queries(head):
    """``Q[n] = T([SOS] + ctx + name_n + [EOT]) / ‖·‖`` with the plain (full-prompt) encoder."""
    enc = head.text_encoder
    rows = enc.encode_context_prompts_naive(head.query_context, head.query_tokens, head.query_eot)
    return rows / rows.norm(dim=-1, keepdim=True)


def test_queries_equal_the_naive_prompt_encoding(clip_file):
    head = lq_head(clip_file).eval()
    with torch.no_grad():
        q = head.queries()
        ref = naive_queries(head)
    assert q.shape == (len(head.flat_names), D)
    assert torch.allclose(q, ref, rtol=1e-4, atol=1e-5)
    # one prompt per *name*: the synonym row differs from its class's first name
    assert not torch.allclose(q[-1], q[-2])
    feats = random_feats(2, D, 3, 3)
    with torch.no_grad():
        lq = head.query_logits(feats)
    expected = loop_query_logits(feats, ref, head.name_to_class, C)
    assert torch.allclose(lq.double(), expected, rtol=1e-4, atol=1e-5)


def test_only_the_query_context_is_new_and_it_trains(clip_file):
    head = lq_head(clip_file).train()
    feats = random_feats(2, D, 3, 3, seed=1)
    head.query_logits(feats).sum().backward()
    assert head.query_context.grad is not None and head.query_context.grad.abs().sum() > 0
    trainable = {n for n, p in head.named_parameters() if p.requires_grad}
    assert 'query_context' in trainable
    assert not [n for n in trainable if n.startswith('text_encoder')]


def test_eval_queries_follow_the_trained_context(clip_file):
    head = lq_head(clip_file).eval()
    with torch.no_grad():
        before = head.queries().clone()
    head.train()
    with torch.no_grad():
        head.query_context.add_(0.5)
    head.eval()
    with torch.no_grad():
        after = head.queries()
    assert not torch.allclose(before, after)
    assert torch.allclose(after, F.normalize(naive_queries(head), dim=-1), rtol=1e-4, atol=1e-5)
    # kept between calls outside training (never recompute what is frozen)
    assert head.queries().data_ptr() == after.data_ptr()
