"""mmengine's ``AmpOptimWrapper`` on any device, CPU (bf16) included."""
from typing import Union

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class DeviceAmpOptimWrapper(AmpOptimWrapper):
    """``AmpOptimWrapper`` that also runs where there is no GPU.

    mmengine 0.10.7's ``AmpOptimWrapper`` asserts that CUDA (or NPU/MLU/MUSA) is present
    and always builds ``torch.cuda.amp.GradScaler``. Its autocast context
    (``mmengine.runner.amp.autocast``) already supports CPU with bfloat16. This subclass
    keeps everything else (autocast in ``optim_context``, ``backward``/``step`` through
    the scaler, the scaler state in checkpoints) and only changes how the scaler is made:

    - CUDA available: exactly the parent (``torch.cuda.amp.GradScaler``), so fp16 gets
      dynamic loss scaling.
    - no CUDA: ``torch.amp.GradScaler('cpu')``; with ``dtype='bfloat16'`` (the only CPU
      autocast dtype) the scaler is disabled, since bf16 has fp32's exponent range and
      needs no loss scaling.

    Use ``optim_wrapper=dict(type='DeviceAmpOptimWrapper', dtype='bfloat16', ...)`` on
    CPU; on GPUs ``AmpOptimWrapper`` and this class behave the same. ``tools/train.py
    --amp`` picks this class (with bf16) when no GPU is available.

    Args:
        loss_scale (float | str | dict): as ``AmpOptimWrapper`` (``'dynamic'``).
        dtype (str | torch.dtype, optional): autocast dtype (``'float16'``,
            ``'bfloat16'``). On CPU only ``'bfloat16'`` (or ``None``, meaning bf16).
        **kwargs: passed to ``OptimWrapper``.
    """

    def __init__(self,
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Union[str, torch.dtype, None] = None,
                 use_fsdp: bool = False,
                 **kwargs):
        if torch.cuda.is_available():
            super().__init__(loss_scale=loss_scale, dtype=dtype, use_fsdp=use_fsdp, **kwargs)
            return
        if isinstance(dtype, str):
            if dtype not in self.valid_dtypes:
                raise ValueError(f'dtype should be one of {self.valid_dtypes}, got {dtype!r}')
            dtype = getattr(torch, dtype)
        if dtype not in (None, torch.bfloat16):
            raise ValueError(f'Without a GPU, mixed precision runs with CPU autocast, which '
                             f'supports only bfloat16; got dtype={dtype}. Set '
                             "optim_wrapper.dtype='bfloat16'.")
        if use_fsdp:
            raise ValueError('use_fsdp=True needs GPUs')
        # Skip AmpOptimWrapper.__init__ (its CUDA assertion and CUDA-only scaler).
        OptimWrapper.__init__(self, **kwargs)
        self.cast_dtype = torch.bfloat16
        self._scale_update_param = loss_scale if isinstance(loss_scale, float) else None
        # bf16 keeps fp32's exponent range: loss scaling is unnecessary, the scaler is a
        # pass-through (scale() returns the loss, step() calls optimizer.step()).
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)
