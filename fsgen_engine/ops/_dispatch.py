"""Backend choice shared by every op.

Backends, in order of preference for a tensor's device:
  cuda device: ``cuda`` (native ``_C``), ``triton``, ``reference``
  cpu device:  ``cpu`` (native ``_C``), ``reference``; ``triton`` only when forced and running under
               ``TRITON_INTERPRET=1`` (the interpreter is for tests, never picked automatically).

``backend=`` on an op is strict: asking for a backend that is not available is an error that says
why. ``FSGEN_BACKEND`` is a preference applied to every op: an op that does not implement that
backend for the device uses its ``auto`` choice, so forcing ``cpu`` still runs ops that only have a
Triton kernel.
"""
from __future__ import annotations

import torch

from fsgen_engine.config import BACKENDS, env_backend
from fsgen_engine.ops._native import has_native_cpu, has_native_cuda, triton_available, triton_interpreting


def available_backends(device: torch.device, *, native: str | None, triton_kernel: bool, include_interpreter: bool = True) -> list[str]:
    """Backends usable for an op on ``device``, fastest first. ``native`` names the ``_C`` functions
    (``{native}_cpu`` / ``{native}_cuda``)."""
    out: list[str] = []
    if device.type == "cuda":
        if native and has_native_cuda(f"{native}_cuda"):
            out.append("cuda")
        if triton_kernel and triton_available():
            out.append("triton")
    else:
        if native and has_native_cpu(f"{native}_cpu"):
            out.append("cpu")
        if include_interpreter and triton_kernel and triton_available() and triton_interpreting():
            out.append("triton")
    out.append("reference")
    return out


def choose_backend(op: str, device: torch.device, backend: str | None, *, native: str | None, triton_kernel: bool = True) -> str:
    if backend is None:
        backend = "auto"
    if backend not in BACKENDS:
        raise ValueError(f"{op}: backend={backend!r} is not a backend; use one of {', '.join(BACKENDS)}")
    usable = available_backends(device, native=native, triton_kernel=triton_kernel)
    if backend != "auto":
        if backend in usable:
            return backend
        raise ValueError(f"{op}: backend={backend!r} is not available for {device.type} tensors here "
                         f"(available: {', '.join(usable)}); {_why_missing(backend, device, native, triton_kernel)}")
    preferred = env_backend()
    if preferred != "auto" and preferred in usable:
        return preferred
    if device.type == "cpu":
        usable = [b for b in usable if b != "triton"]
    return usable[0]


def _why_missing(backend: str, device: torch.device, native: str | None, triton_kernel: bool) -> str:
    if backend == "cuda":
        if device.type != "cuda":
            return "the cuda backend needs CUDA tensors: move the inputs with .cuda()"
        if not native:
            return "this op has no CUDA kernel; use backend='triton'"
        return "fsgen_engine._C was built without CUDA: reinstall with FSGEN_BUILD_CUDA=1 on a machine with nvcc"
    if backend == "cpu":
        if device.type != "cpu":
            return "the cpu backend needs CPU tensors: move the inputs with .cpu()"
        if not native:
            return "this op has no C++ CPU kernel; use backend='reference'"
        return "fsgen_engine._C is not built: reinstall the package (pip install -e .) with a C++ compiler and cmake"
    if backend == "triton":
        if not triton_kernel:
            return "this op has no Triton kernel"
        if not triton_available():
            return "triton is not installed: pip install triton"
        return "Triton runs CPU tensors only under the interpreter: set TRITON_INTERPRET=1 before importing fsgen_engine"
    return ""
