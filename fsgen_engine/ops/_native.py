"""Access to the optional native extension ``fsgen_engine._C`` and the Triton kernels."""
from __future__ import annotations

import contextlib
import functools
import os
from typing import Iterator

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


# Tests only: the SIMT emulator module (``_C_simt``, csrc/simt/simt.h, built by tests/_simt.py) that runs
# the CUDA kernels on CPU tensors. While one is set, the ops offer backend="cuda" for cpu tensors and
# run it there; ``auto`` and FSGEN_BACKEND never pick it (ops/_dispatch.py).
_cuda_emulator = None


def cuda_emulator():
    """The CUDA emulator module in use, or ``None`` (the default: no emulation)."""
    return _cuda_emulator


@contextlib.contextmanager
def use_cuda_emulator(module) -> Iterator[object]:
    """Within the block, ``backend="cuda"`` on **cpu** tensors runs ``module.{op}_cuda`` (the CUDA kernels
    under the SIMT emulator; ``module`` is a ``_C_simt`` from tests/_simt.py). Process-wide, restored on
    exit; for tests."""
    global _cuda_emulator
    if module is not None and not getattr(module, "is_simt_emulator", False):
        raise TypeError(f"use_cuda_emulator: {module!r} is not a SIMT emulator module (_C_simt from tests/_simt.py)")
    previous, _cuda_emulator = _cuda_emulator, module
    try:
        yield module
    finally:
        _cuda_emulator = previous


def has_native_cuda(fn_name: str, device_type: str = "cuda") -> bool:
    """Whether ``fn_name`` (``{op}_cuda``) can run on tensors of ``device_type``: from ``_C`` on cuda
    devices, from the CUDA emulator (if one is set) on cpu tensors."""
    if device_type == "cpu":
        return _cuda_emulator is not None and hasattr(_cuda_emulator, fn_name)
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
    """The ``_C`` function ``name`` serving tensors on ``device`` (e.g. a CUDA op's workspace size); a
    ``*_cuda*`` function on cpu tensors is the CUDA emulator's (:func:`use_cuda_emulator`)."""
    if device.type == "cpu" and "_cuda" in name and _cuda_emulator is not None:
        return getattr(_cuda_emulator, name)
    return getattr(native(), name)


def call_native(fn: str, backend: str, device: torch.device, **kwargs) -> None:
    """Call ``_C.{fn}_{backend}`` with keyword arguments (names: csrc/include/op_args.h). The CUDA
    entry points also get the device index, which they make current for the launch (``_C`` does not
    link libtorch, so torch's device guard does not reach it), and that device's current stream. On
    cpu tensors the ``cuda`` backend is the CUDA emulator's (:func:`use_cuda_emulator`)."""
    if backend == "cuda" and device.type == "cpu":
        if _cuda_emulator is None:
            raise RuntimeError(f"{fn}: the cuda backend on cpu tensors needs the CUDA emulator (use_cuda_emulator)")
        getattr(_cuda_emulator, f"{fn}_cuda")(**kwargs, device=0, stream=0)
        return
    entry = getattr(native(), f"{fn}_{backend}")
    if backend == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        entry(**kwargs, device=index, stream=torch.cuda.current_stream(index).cuda_stream)
    else:
        entry(**kwargs)
