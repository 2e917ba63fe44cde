"""Backend choice and the op registry shared by every op.

Backends, in order of preference for a tensor's device:
  cuda device: ``cuda`` (native ``_C``), ``triton``, ``reference``
  cpu device:  ``cpu`` (native ``_C``), ``reference``; ``triton`` only when forced and running under
               ``TRITON_INTERPRET=1`` (the interpreter is for tests, never picked automatically);
               ``cuda`` only when forced inside ``_native.use_cuda_emulator`` (the CUDA kernels run by
               the SIMT emulator, for tests; never picked by ``auto`` or ``FSGEN_BACKEND``).
Other device types (``meta``, ``mps``, ...) are refused before any backend runs: the native kernels
would read their ``data_ptr()`` as host memory.

``backend=`` on an op is strict: asking for a backend that is not available is an error that says
why. ``FSGEN_BACKEND`` is a preference applied to every op: an op that does not implement that
backend for the device uses its ``auto`` choice, so forcing ``cpu`` still runs ops that only have a
Triton kernel.

Each op module (``ops/<name>.py``) validates its arguments, then hands them to its :class:`Op`:

    OP = Op("token_stats", native=True, triton=True)

    @OP.impl("cpu", "cuda")            # one function per backend (or per group of backends)
    def _native(backend, logits): ...  # takes the chosen backend's name first

    def token_stats(logits, *, backend="auto"):
        ...validate...
        return OP(logits.device, backend, logits)
"""
from __future__ import annotations

from typing import Callable

import torch

from fsgen_engine.config import BACKENDS, env_backend
from fsgen_engine.ops._native import has_native_cpu, has_native_cuda, triton_available, triton_interpreting
from fsgen_engine.ops._validate import check_device_type

def available_backends(device: torch.device, *, native: str | None, triton_kernel: bool, include_interpreter: bool = True) -> list[str]:
    """Backends usable for an op on ``device``, fastest first. ``native`` names the ``_C`` functions
    (``{native}_cpu`` / ``{native}_cuda``)."""
    out: list[str] = []
    if device.type == "cuda":
        if native and has_native_cuda(f"{native}_cuda"):
            out.append("cuda")
        if triton_kernel and triton_available():
            out.append("triton")
    elif device.type == "cpu":
        if native and has_native_cpu(f"{native}_cpu"):
            out.append("cpu")
        if native and has_native_cuda(f"{native}_cuda", "cpu"):
            out.append("cuda")
        if include_interpreter and triton_kernel and triton_available() and triton_interpreting():
            out.append("triton")
    out.append("reference")
    return out


def choose_backend(op: str, device: torch.device, backend: str | None, *, native: str | None, triton_kernel: bool = True) -> str:
    if backend is None:
        backend = "auto"
    if backend not in BACKENDS:
        raise ValueError(f"{op}: backend={backend!r} is not a backend; use one of {', '.join(BACKENDS)}")
    check_device_type(op, "the input", device)
    usable = available_backends(device, native=native, triton_kernel=triton_kernel)
    if backend != "auto":
        if backend in usable:
            return backend
        raise ValueError(f"{op}: backend={backend!r} is not available for {device.type} tensors here "
                         f"(available: {', '.join(usable)}); {_why_missing(backend, device, native, triton_kernel)}")
    preferred = env_backend()
    if preferred != "auto" and preferred in usable and not (device.type == "cpu" and preferred == "cuda"):
        return preferred
    if device.type == "cpu":
        usable = [b for b in usable if b not in ("triton", "cuda")]
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


Impl = Callable[..., object]


class Op:
    """One op's backends. ``native``: the op has ``_C`` functions ``{name}_cpu`` / ``{name}_cuda``;
    ``triton``: it has a Triton kernel. Implementations register with :meth:`impl`; calling the op
    object chooses a backend for the device and runs that backend's implementation."""

    def __init__(self, name: str, *, native: bool, triton: bool):
        self.name = name
        self.native = name if native else None
        self.triton = triton
        self.impls: dict[str, Impl] = {}
        OPS[name] = self

    def impl(self, *backends: str) -> Callable[[Impl], Impl]:
        """Register the decorated function for ``backends``; it is called as ``fn(backend, *args)``."""
        def register(fn: Impl) -> Impl:
            for b in backends:
                self.impls[b] = fn
            return fn
        return register

    def backends(self, device: torch.device) -> list[str]:
        """Backends this op can use for ``device`` here, fastest first."""
        return [b for b in available_backends(device, native=self.native, triton_kernel=self.triton)
                if b in self.impls]

    def choose(self, device: torch.device, backend: str | None) -> str:
        return choose_backend(self.name, device, backend, native=self.native, triton_kernel=self.triton)

    def run(self, which: str, *args, **kwargs):
        """Run the implementation of the already chosen backend ``which``."""
        return self.impls[which](which, *args, **kwargs)

    def __call__(self, device: torch.device, backend: str | None, *args, **kwargs):
        return self.run(self.choose(device, backend), *args, **kwargs)


OPS: dict[str, Op] = {}  # every op, by name (filled as the op modules are imported)
