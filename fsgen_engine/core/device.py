"""Device and dtype resolution: what ``device="auto"`` / ``dtype="auto"`` mean, in one place for the
engine and the model loaders."""
from __future__ import annotations

import torch

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
           "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_device(device) -> torch.device:
    """``"auto"``/None: CUDA when available, else the CPU; otherwise ``torch.device(device)``, checked."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a device: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device='cpu' or 'auto'")
    return dev


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    """``"auto"``/None: bfloat16 on CUDA (float16 where bf16 is unsupported), float32 on the CPU; else
    float32, float16 or bfloat16 by name or ``torch.dtype``."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise ValueError(f"dtype={dtype} is not supported: use float32, float16 or bfloat16")
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    key = str(dtype).replace("torch.", "").lower()
    if key not in _DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported: use 'auto', 'float32', 'float16' or 'bfloat16'")
    return _DTYPES[key]
