"""Argument checks for the ops. Every error names the argument, the value and the fix."""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
INDEX_DTYPES = (torch.int32, torch.int64)
DEVICE_TYPES = ("cpu", "cuda")


def _dtype_names(dtypes: Iterable[torch.dtype]) -> str:
    return ", ".join(str(d).replace("torch.", "") for d in dtypes)


def check_device_type(op: str, name: str, device: torch.device) -> None:
    # The kernels read data_ptr() as host or CUDA memory: a meta (or mps, xla...) tensor would crash them.
    if device.type not in DEVICE_TYPES:
        raise ValueError(f"{op}: {name} is on device {str(device)!r}; the ops run on cpu or cuda tensors "
                         f"(a meta tensor has no data to compute on): move it with .to('cpu') or .to('cuda')")


def check_tensor(op: str, name: str, t, *, ndim: int | Sequence[int] | None = None,
                 dtypes: Sequence[torch.dtype] | None = None, device: torch.device | None = None) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    check_device_type(op, name, t.device)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if t.dim() not in allowed:
            want = " or ".join(f"{n}-D" for n in allowed)
            raise ValueError(f"{op}: {name} must be {want}, got shape {tuple(t.shape)}")
    if dtypes is not None and t.dtype not in dtypes:
        raise TypeError(f"{op}: {name} has dtype {str(t.dtype).replace('torch.', '')}; "
                        f"supported: {_dtype_names(dtypes)} (convert with .to(...))")
    if device is not None and t.device != device:
        raise ValueError(f"{op}: {name} is on {t.device} but the other inputs are on {device}; "
                         f"move it with .to('{device}')")


def check_last_dim_contiguous(op: str, name: str, t: torch.Tensor) -> None:
    if t.numel() > 0 and t.stride(-1) != 1:
        raise ValueError(f"{op}: {name} must have stride 1 along its last dimension (got strides {t.stride()}); "
                         f"pass {name}.contiguous()")


def check_nonempty(op: str, name: str, t: torch.Tensor, dim: int) -> None:
    if t.shape[dim] == 0:
        raise ValueError(f"{op}: {name} has size 0 along dim {dim} (shape {tuple(t.shape)}); it must be non-empty")


def per_row(op: str, name: str, value, batch: int, device: torch.device) -> torch.Tensor:
    """Turn a scalar or a ``[B]`` tensor/sequence into a ``[B]`` tensor on ``device`` (its own dtype; a
    list becomes int64 or float64). Values are checked by the caller (``core.sampling.check_values``
    for sampling parameters: one host sync per call, outside any kernel)."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            value = value.reshape(1).expand(batch)
        if value.dim() != 1 or value.shape[0] != batch:
            raise ValueError(f"{op}: {name} must be a scalar or a [B]={batch} tensor, got shape {tuple(value.shape)}")
        return value.to(device=device)
    if isinstance(value, (list, tuple)):
        if len(value) != batch:
            raise ValueError(f"{op}: {name} has {len(value)} values but the batch has {batch} rows")
        return torch.tensor(value, device=device)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.full((batch,), value, device=device)
    raise TypeError(f"{op}: {name} must be a number or a [B] tensor, got {type(value).__name__}")
