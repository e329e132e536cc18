"""Mixed-precision helpers: explicit fp32 islands and a precision context.

Under ``torch.autocast`` (mmengine's ``AmpOptimWrapper``, ``--amp``, or the test loop's
``fp16=True``) matmuls and convolutions run in bf16/fp16. A few computations must stay
fp32 because their inputs are large or their results are kept:

- the hard Gumbel-softmax at scale 100 (bf16 has 8 mantissa bits: ``100·cos`` would be
  rounded to steps of 0.25-0.5, changing which class wins),
- loss reductions (cross-entropy over ``100·cos`` logits, means over pixels),
- BatchNorm statistics,
- the cached text queries ``Q`` and the cached inference bias.

:func:`fp32` wraps such a function: autocast is switched off for the tensors' device
and every floating tensor argument is cast to ``float32``.
"""
import functools
from contextlib import contextmanager, nullcontext
from typing import Callable, Optional, Union

import torch

__all__ = ['fp32', 'autocast_off', 'precision_context', 'resolve_precision', 'autocast_dtype']

_PRECISIONS = {
    'fp32': None,
    'float32': None,
    'bf16': torch.bfloat16,
    'bfloat16': torch.bfloat16,
    'fp16': torch.float16,
    'float16': torch.float16
}


@contextmanager
def autocast_off():
    """Disable autocast on every device type in use (CPU and, when present, CUDA)."""
    with torch.autocast('cpu', enabled=False):
        if torch.cuda.is_available():
            with torch.autocast('cuda', enabled=False):
                yield
        else:
            yield


def autocast_dtype(device: Union[str, torch.device]) -> Optional[torch.dtype]:
    """The dtype autocast currently casts to on ``device``, or ``None`` when it is off."""
    device_type = torch.device(device).type
    if not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def _to_float(value):
    if torch.is_tensor(value) and value.is_floating_point() and value.dtype != torch.float32:
        return value.float()
    return value


def fp32(fn: Callable) -> Callable:
    """Decorator: run ``fn`` in fp32 with autocast off (floating tensor args → float32).

    Outside autocast with fp32 inputs it is a no-op, so fp32 results are unchanged.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        args = tuple(_to_float(a) for a in args)
        kwargs = {k: _to_float(v) for k, v in kwargs.items()}
        with autocast_off():
            return fn(*args, **kwargs)

    return wrapper


def resolve_precision(precision: Optional[Union[str, torch.dtype]]) -> Optional[torch.dtype]:
    """``'fp32'``/``None`` → ``None`` (no autocast); ``'bf16'``/``'fp16'`` → the dtype."""
    if precision is None or isinstance(precision, torch.dtype):
        return None if precision in (None, torch.float32) else precision
    if precision not in _PRECISIONS:
        raise ValueError(f'precision must be one of {sorted(_PRECISIONS)}, got {precision!r}')
    return _PRECISIONS[precision]


def precision_context(precision: Optional[Union[str, torch.dtype]], device: Union[str,
                                                                                  torch.device]):
    """``torch.autocast`` on ``device`` at ``precision``, or a no-op for fp32.

    fp16 autocast exists only on accelerators: on CPU ``'fp16'`` is an error (use
    ``'bf16'``).
    """
    dtype = resolve_precision(precision)
    if dtype is None:
        return nullcontext()
    device_type = torch.device(device).type
    if device_type == 'cpu' and dtype == torch.float16:
        raise ValueError("fp16 autocast is not supported on CPU; use precision='bf16'")
    return torch.autocast(device_type, dtype=dtype)
