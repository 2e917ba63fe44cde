"""Shared set-up for the kernel micro-benchmarks (pytest-benchmark).

Run: ``pytest bench/kernels --benchmark-only`` (add ``--benchmark-json=bench/results/kernels_<device>.json``
to keep the figures). Each benchmark stores the bytes it moves and the achieved GB/s in
``benchmark.extra_info``; tests never assert timings.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    # Triton kernels are only benchmarked on a GPU; under the interpreter they would measure Python.
    os.environ.setdefault("FSGEN_BENCH_SKIP_TRITON", "1")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def device():
    return DEVICE


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def record_bandwidth(benchmark, nbytes: int) -> None:
    """Attach bytes moved and achieved GB/s (from the median time) to the benchmark record."""
    benchmark.extra_info["bytes"] = int(nbytes)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        median = stats.stats.median
        if median > 0:
            benchmark.extra_info["GB/s"] = nbytes / median / 1e9


def backends_to_bench(native: str, baselines=("eager",)) -> list[str]:
    """Kernel backends available here for an op (never the reference: it is the eager baseline),
    then the eager baselines, then ``torch.compile`` of the reference on CUDA."""
    from fsgen_engine.ops._dispatch import available_backends

    out = [b for b in available_backends(torch.device(DEVICE), native=native, triton_kernel=True) if b != "reference"]
    if os.environ.get("FSGEN_BENCH_SKIP_TRITON") == "1":
        out = [b for b in out if b != "triton"]
    out += list(baselines)
    if DEVICE == "cuda":
        out.append("compile")
    return out
