"""Access to the optional native extension ``fsgen_engine._C`` and the Triton kernels."""
from __future__ import annotations

import functools
import os

import torch

DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


@functools.lru_cache(maxsize=None)
def native():
    """The ``_C`` module, or ``None`` when it was not built (the package then falls back)."""
    try:
        from fsgen_engine import _C  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _C


def has_native_cpu(fn_name: str) -> bool:
    mod = native()
    return mod is not None and hasattr(mod, fn_name)


def has_native_cuda(fn_name: str) -> bool:
    mod = native()
    return mod is not None and bool(getattr(mod, "has_cuda", False)) and hasattr(mod, fn_name)


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def dtype_code(t: torch.Tensor) -> int:
    return DTYPE_CODES[t.dtype]


def native_function(name: str, device: torch.device):
    """The ``_C`` function ``name`` serving tensors on ``device`` (e.g. a CUDA op's workspace size)."""
    return getattr(native(), name)


def call_native(fn: str, backend: str, device: torch.device, **kwargs) -> None:
    """Call ``_C.{fn}_{backend}`` with keyword arguments (names: csrc/include/op_args.h). The CUDA
    entry points also get the device index, which they make current for the launch (``_C`` does not
    link libtorch, so torch's device guard does not reach it), and that device's current stream."""
    entry = getattr(native(), f"{fn}_{backend}")
    if backend == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        entry(**kwargs, device=index, stream=torch.cuda.current_stream(index).cuda_stream)
    else:
        entry(**kwargs)
