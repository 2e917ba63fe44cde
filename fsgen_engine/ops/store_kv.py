"""ops.store_kv: write new keys/values into KV pages (temporary: reference backend only;
the Triton kernel and full validation are being added)."""
from __future__ import annotations

import torch

from fsgen_engine.reference.store_kv import store_kv_reference


def store_kv(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
             slot_mapping: torch.Tensor, *, backend: str = "auto") -> None:
    store_kv_reference(k, v, k_cache, v_cache, slot_mapping)
