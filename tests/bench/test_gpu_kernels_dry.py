"""bench/gpu_kernels.py's CUDA cases, before any GPU time is spent on them: every case of the
benchmark runs (small vocabulary) on the CUDA kernels under the SIMT emulator, as ``cuda`` (rows
split at small batch) and ``cuda-1blk`` (one block per row), beside torch eager."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from fsgen_engine.ops._native import use_cuda_emulator
from tests._simt import build_cuda_emulator

pytestmark = pytest.mark.xdist_group("simt")
ROOT = Path(__file__).resolve().parents[2]


def test_every_benchmark_case_runs_on_the_emulated_cuda_kernels(monkeypatch):
    # the benchmark puts bench/kernels first on sys.path and imports its `conftest` helpers by that
    # name: undo both afterwards, and hide a test directory's `conftest` already imported here
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [m for m in sys.modules if m == "conftest" or m.startswith("bench_")]:
        monkeypatch.delitem(sys.modules, name)
    spec = importlib.util.spec_from_file_location("gpu_kernels", ROOT / "bench" / "gpu_kernels.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "V", 1000)
    seen = set()
    with use_cuda_emulator(build_cuda_emulator()):
        for op, dtype, B, nbytes, impls in bench.cases(torch.device("cpu"), 1 << 16):
            assert {"eager", "cuda", "cuda-1blk"} <= set(impls), (op, sorted(impls))
            for name in ("eager", "cuda", "cuda-1blk"):
                out = impls[name]()
                assert out is not None, (op, name)
            seen.add(op)
    assert seen == {"token_stats", "fuse_logits", "sample", "verify_greedy", "verify_sampled"}
