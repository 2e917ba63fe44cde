"""ops.paged_attention (temporary: reference backend only; Triton kernel and validation are being added)."""
from __future__ import annotations

import torch

from fsgen_engine.reference.paged_attention import paged_attention_reference


def paged_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, page_table: torch.Tensor,
                    seq_lens: torch.Tensor, cu_q_lens: torch.Tensor, *, scale: float, causal: bool = True,
                    max_q_len: int | None = None, max_seq_len: int | None = None, backend: str = "auto") -> torch.Tensor:
    return paged_attention_reference(q, k_cache, v_cache, page_table, seq_lens, cu_q_lens, scale=scale, causal=causal)
