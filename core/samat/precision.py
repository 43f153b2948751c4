"""Mixed precision for training (``train.precision``): autocast and loss scaling.

Only the *forward* passes of a training step run under ``torch.autocast`` (the
:class:`Autocast` wrapper): a backward inside autocast would recompute the gradients of
float32 operations in low precision, whereas outside it every backward op keeps the dtype
autocast chose for its forward, as torch recommends. Evaluation always runs in float32.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from samat.errors import SamatError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _to_float(output: Any) -> Any:
    """``output`` with half-precision tensors (also inside tuples/lists/dicts) in float32."""
    if isinstance(output, Tensor):
        return output.float() if output.dtype in (torch.float16, torch.bfloat16) else output
    if isinstance(output, dict):
        return {k: _to_float(v) for k, v in output.items()}
    if isinstance(output, list | tuple):
        return type(output)(_to_float(v) for v in output)
    return output


class Autocast(nn.Module):
    """``module``'s forward under ``torch.autocast(device_type, dtype)``; floating outputs are
    returned in float32, so the loss (and its gradient's start) is computed in float32."""

    def __init__(self, module: nn.Module, device_type: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.module, self.device_type, self.dtype = module, device_type, dtype

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.autocast(self.device_type, dtype=self.dtype):
            return _to_float(self.module(*args, **kwargs))


def check_precision(precision: str, device: torch.device) -> None:
    """Raise a SamatError if ``device`` cannot train in ``precision``."""
    if precision == "fp32":
        return
    if device.type not in ("cpu", "cuda"):
        raise SamatError(f"train.precision: {precision} is supported on cpu and cuda, not on "
                         f"{device.type}; set train.precision=fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SamatError("train.precision: this GPU has no bfloat16 support; use fp16 or fp32")


def with_autocast(model: nn.Module, precision: str, device: torch.device) -> nn.Module:
    """``model`` itself for fp32, else wrapped in :class:`Autocast`."""
    if precision == "fp32":
        return model
    return Autocast(model, device.type, DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A fresh ``GradScaler`` for fp16 (loss scaling against gradient underflow); else None."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None

