"""store_kv: scatter of a step's new K/V rows into pages (decode batch and a prefill chunk).
extra_info: bytes read + written and the achieved GB/s."""
import os

import pytest
import torch

from conftest import DEVICE, record_bandwidth, sync
from fsgen_engine.ops import store_kv

HKV, D, PAGE, P = 8, 128, 16, 4096
DTYPE = torch.float16 if DEVICE == "cuda" else torch.float32
BACKENDS = ["triton", "reference"] if DEVICE == "cuda" and os.environ.get("FSGEN_BENCH_SKIP_TRITON") != "1" else ["reference"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_tokens", [1, 64, 4096])
def bench_store_kv(benchmark, n_tokens, backend):
    kc = torch.zeros(P, PAGE, HKV, D, dtype=DTYPE, device=DEVICE)
    vc = torch.zeros_like(kc)
    k = torch.randn(n_tokens, HKV, D, dtype=DTYPE, device=DEVICE)
    v = torch.randn_like(k)
    slots = torch.randperm(P * PAGE, device=DEVICE)[:n_tokens]

    def run():
        store_kv(k, v, kc, vc, slots, backend=backend)
        sync()

    run()
    benchmark(run)
    benchmark.extra_info.update(n_tokens=n_tokens, backend=backend, dtype=str(DTYPE))
    record_bandwidth(benchmark, 4 * k.numel() * k.element_size() + slots.numel() * 8)
