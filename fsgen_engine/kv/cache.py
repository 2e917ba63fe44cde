"""Per-model K/V storage over the shared page pool."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ModelKVCache:
    """One model's per-layer K/V pages, indexed by the pool's page ids.

    ``k[layer]`` and ``v[layer]``: ``[num_pages, page_size, num_kv_heads, head_dim]`` (the layout of
    flash-attn's paged ``flash_attn_with_kvcache``). Token slot ``s`` is page ``s // page_size``,
    offset ``s % page_size``.
    """

    k: list[torch.Tensor]
    v: list[torch.Tensor]

    @classmethod
    def allocate(cls, num_layers: int, num_pages: int, page_size: int, num_kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str) -> "ModelKVCache":
        shape = (num_pages, page_size, num_kv_heads, head_dim)
        k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        return cls(k, v)

    @staticmethod
    def bytes_per_page(num_layers: int, page_size: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype) -> int:
        return 2 * num_layers * page_size * num_kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()

    @property
    def num_layers(self) -> int:
        return len(self.k)

    @property
    def page_size(self) -> int:
        return int(self.k[0].shape[1])


def copy_pages(cache: ModelKVCache, src: torch.Tensor, dst: torch.Tensor) -> None:
    """Copy pages ``src`` to pages ``dst`` (int64 ``[C]`` on the cache's device) in every layer."""
    for k, v in zip(cache.k, cache.v):
        k.index_copy_(0, dst, k.index_select(0, src))
        v.index_copy_(0, dst, v.index_select(0, src))
