"""(device, backend) pairs for the op tests: every backend each present device has.

Op tests that take ``device, backend`` run on the CPU backends (C++, Triton under the interpreter,
reference) and, on a machine with a GPU, on the GPU backends (``cuda`` from ``_C``, Triton compiled
for the GPU, reference) too, so that no GPU kernel goes untested where a GPU exists. ``cuda`` runs
twice: as ``auto`` chooses, and with every row cut into 3 column splits (the small-batch kernels).
"""
import pytest
import torch

from fsgen_engine.ops._dispatch import available_backends
from tests.conftest import DEVICES


def device_backends(native: str | None, *, triton_kernel: bool = True, exclude_interpreted: bool = False):
    """pytest params ``(device, backend)``; ``exclude_interpreted`` drops Triton under the
    interpreter (too slow for large shapes) but keeps compiled GPU Triton."""
    out = []
    for dev in DEVICES:
        for b in available_backends(torch.device(dev), native=native, triton_kernel=triton_kernel):
            if exclude_interpreted and b == "triton" and dev == "cpu":
                continue
            out.append(pytest.param(dev, b, id=f"{dev}-{b}"))
            if dev == "cuda" and b == "cuda":
                # the split-row regime of the CUDA kernels (auto picks it only for long rows at small batch)
                out.append(pytest.param(dev, b, id=f"{dev}-{b}-split3", marks=pytest.mark.split_rows(3)))
    return out


def generator(device, seed: int = 0) -> torch.Generator:
    """A seeded generator on ``device`` (the ops draw their seed on the logits' device)."""
    return torch.Generator(device=device).manual_seed(seed)
