"""Float comparisons with a tolerance relative to the size of the values.

Import from a test module as ``from tests.numeric_utils import assert_close_to_scale``.
"""
from typing import Union

import numpy as np
import torch

ArrayLike = Union[torch.Tensor, np.ndarray]


def assert_close_to_scale(actual: ArrayLike,
                          expected: ArrayLike,
                          rtol: float = 1e-5,
                          msg: str = '') -> float:
    """Assert ``max |actual - expected| <= rtol * max |expected|`` (same shape).

    Float32 results differ with the summation order (thread counts, BLAS kernels), by an
    amount proportional to the size of the terms: a bound relative to the largest value
    holds for logits near 5 as for probabilities, where an absolute ``1e-5`` is flaky on
    the former and lax on the latter. Elementwise relative bounds would fail near zero.

    Args:
        actual, expected: tensors or arrays of the same shape.
        rtol (float): the allowed error as a fraction of ``max |expected|``.
        msg (str): prefix of the failure message.

    Returns:
        float: the largest absolute difference.
    """
    a = torch.as_tensor(np.asarray(actual) if isinstance(actual, np.ndarray) else actual)
    e = torch.as_tensor(np.asarray(expected) if isinstance(expected, np.ndarray) else expected)
    assert a.shape == e.shape, f'{msg} shape {tuple(a.shape)} != {tuple(e.shape)}'
    a, e = a.detach().double().cpu(), e.detach().double().cpu()
    assert bool(torch.isfinite(a).all() == torch.isfinite(e).all()), f'{msg} non-finite values'
    scale = float(e.abs().max()) if e.numel() else 0.0
    worst = float((a - e).abs().max()) if e.numel() else 0.0
    assert worst <= rtol * max(
        scale,
        torch.finfo(torch.float32).tiny), (
            f'{msg} max |diff| {worst:.3g} > {rtol:g} x max |expected| {scale:.3g}')
    return worst
