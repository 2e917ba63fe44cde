"""Reference (plain torch) for ops.store_kv: the definition the kernels are tested against."""
from __future__ import annotations

import torch


def store_kv_reference(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                       slot_mapping: torch.Tensor) -> None:
    """Write ``k``/``v`` ``[N, Hkv, D]`` into ``k_cache``/``v_cache`` ``[P, S, Hkv, D]`` at the
    flattened token slots ``slot_mapping`` ``[N]`` (``-1`` = skip)."""
    keep = slot_mapping >= 0
    slots = slot_mapping[keep].long()
    page_size = k_cache.shape[1]
    pages, offsets = slots // page_size, slots % page_size
    k_cache[pages, offsets] = k[keep].to(k_cache.dtype)
    v_cache[pages, offsets] = v[keep].to(v_cache.dtype)
