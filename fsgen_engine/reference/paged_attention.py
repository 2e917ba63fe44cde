"""Reference (plain torch) for ops.paged_attention: gather each sequence's pages, then SDPA."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def paged_attention_reference(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, page_table: torch.Tensor,
                              seq_lens: torch.Tensor, cu_q_lens: torch.Tensor, *, scale: float,
                              causal: bool = True) -> torch.Tensor:
    """Attention of ragged new queries over paged keys/values.

    q: ``[N, H, D]``; k_cache, v_cache: ``[P, S, Hkv, D]``; page_table ``[B, max_pages]`` int32;
    seq_lens ``[B]`` (KV length including the new tokens); cu_q_lens ``[B+1]``. Query ``j`` of
    sequence ``b`` is at position ``seq_lens[b] - q_len_b + j`` and, when ``causal``, sees keys at
    positions ``<=`` its own. Returns ``[N, H, D]`` in ``q.dtype``; math in float32.
    """
    out = torch.empty_like(q)
    page_size = k_cache.shape[1]
    num_heads, num_kv_heads = q.shape[1], k_cache.shape[2]
    group = num_heads // num_kv_heads
    lens = seq_lens.tolist()
    cu = cu_q_lens.tolist()
    for b, kv_len in enumerate(lens):
        q_start, q_end = cu[b], cu[b + 1]
        q_len = q_end - q_start
        if q_len == 0:
            continue
        n_pages = (kv_len + page_size - 1) // page_size
        pages = page_table[b, :n_pages].long()
        k = k_cache[pages].reshape(-1, num_kv_heads, k_cache.shape[-1])[:kv_len]
        v = v_cache[pages].reshape(-1, num_kv_heads, v_cache.shape[-1])[:kv_len]
        qb = q[q_start:q_end].transpose(0, 1).float()                      # [H, q_len, D]
        kb = k.transpose(0, 1).float().repeat_interleave(group, dim=0)      # [H, kv_len, D]
        vb = v.transpose(0, 1).float().repeat_interleave(group, dim=0)
        mask = None
        if causal:
            q_pos = torch.arange(kv_len - q_len, kv_len, device=q.device)
            mask = torch.arange(kv_len, device=q.device)[None, :] <= q_pos[:, None]
        ob = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, scale=scale)
        out[q_start:q_end] = ob.transpose(0, 1).to(q.dtype)
    return out
