"""Model folders for the tensor-parallel engine tests: the engine tests' toy pair (a llama large, a
perturbed copy as small, a further perturbation as small_ft) saved as HF folders with a tokenizer,
head_dim 64 so the real paged kernels run, and the single-process engine they are compared with."""
from __future__ import annotations

import copy

import pytest
import torch

from tests.engine.toy import make_hf, make_tokenizer


def _perturbed(model, seed: int, scale: float):
    out = copy.deepcopy(model)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(scale * torch.randn_like(p) * p.abs().mean())
    return out


@pytest.fixture(scope="session")
def tp_folders(tmp_path_factory):
    large = make_hf("llama", 3, 0, hidden=256)
    small = _perturbed(large, 100, 0.08)
    models = {"large": large, "small": small, "small_ft": _perturbed(small, 101, 0.15)}
    out = {}
    for role, m in models.items():
        d = tmp_path_factory.mktemp(f"tp_{role}")
        m.save_pretrained(d, safe_serialization=True)
        make_tokenizer(str(d))
        out[role] = str(d)
    return out


def engine_kwargs():
    return dict(num_pages=256, page_size=4, max_batch=8, device="cpu")
