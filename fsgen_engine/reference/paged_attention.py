"""Reference (plain torch) for ops.paged_attention: gather each sequence's pages, then SDPA.

Sliding window (``window = W > 0``): query at position ``i`` sees key ``j`` iff ``i - j < W`` (and ``j <= i``
when causal), HF transformers' ``sliding_window_overlay`` (``kv_idx > q_idx - sliding_window``) ANDed with
its causal mask: a query sees itself and the ``W - 1`` keys before it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def paged_attention_reference(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, page_table: torch.Tensor,
                              seq_lens: torch.Tensor, cu_q_lens: torch.Tensor, *, scale: float,
                              causal: bool = True, window: int = 0) -> torch.Tensor:
    """Attention of ragged new queries over paged keys/values.

    q: ``[N, H, D]``; k_cache, v_cache: ``[P, S, Hkv, D]``; page_table ``[B, max_pages]`` int32;
    seq_lens ``[B]`` (KV length including the new tokens); cu_q_lens ``[B+1]``. Query ``j`` of
    sequence ``b`` is at position ``seq_lens[b] - q_len_b + j`` and, when ``causal``, sees keys at
    positions ``<=`` its own; ``window > 0`` also hides keys at positions ``<= own - window`` (0: no
    window). Returns ``[N, H, D]`` in ``q.dtype``; math in float32.
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
        q_pos = torch.arange(kv_len - q_len, kv_len, device=q.device)[:, None]
        k_pos = torch.arange(kv_len, device=q.device)[None, :]
        if causal:
            mask = k_pos <= q_pos
        if window > 0:
            in_window = k_pos > q_pos - window
            mask = in_window if mask is None else mask & in_window
        ob = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, scale=scale)
        out[q_start:q_end] = ob.transpose(0, 1).to(q.dtype)
    return out


def paged_attention_padded(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, page_table: torch.Tensor,
                           seq_lens: torch.Tensor, cu_q_lens: torch.Tensor, *, scale: float, causal: bool = True,
                           window: int = 0, max_q_len: int | None = None,
                           max_seq_len: int | None = None) -> torch.Tensor:
    """Same result as ``paged_attention_reference``, vectorised over the batch (the CPU inference path).

    Pads every sequence to ``max_q_len`` queries and ``max_seq_len`` keys and masks, so it is one
    gather + one batched fused attention (SDPA); it falls back to the per-sequence loop when padding would waste
    more than it saves (one long prefill next to decodes).
    """
    N, H, D = q.shape
    B = seq_lens.shape[0]
    if N == 0 or B == 0:
        return torch.empty_like(q)
    q_lens = cu_q_lens[1:] - cu_q_lens[:-1]
    if max_q_len is None:
        max_q_len = int(q_lens.max().item())
    if max_seq_len is None:
        max_seq_len = int(seq_lens.max().item())
    if max_q_len == 0:
        return torch.empty_like(q)
    if B * max_q_len > 2 * N + 8 or B * max_q_len * max_seq_len * H > (1 << 26):
        return paged_attention_reference(q, k_cache, v_cache, page_table, seq_lens, cu_q_lens, scale=scale,
                                         causal=causal, window=window)
    P, S, Hkv, _ = k_cache.shape
    n_pages = (max_seq_len + S - 1) // S
    pages = page_table[:, :n_pages].long()                                        # [B, n_pages]
    k = k_cache[pages].reshape(B, n_pages * S, Hkv, D)[:, :max_seq_len].transpose(1, 2).float()  # [B, Hkv, L, D]
    v = v_cache[pages].reshape(B, n_pages * S, Hkv, D)[:, :max_seq_len].transpose(1, 2).float()
    # Scatter the ragged queries into [B, H, Mq, D]; row j of sequence b is token cu[b] + j.
    j = torch.arange(max_q_len, device=q.device)
    q_lens_l, cu = q_lens.long(), cu_q_lens[:-1].long()
    valid_q = j[None, :] < q_lens_l[:, None]                                        # [B, Mq]
    rows = (cu[:, None] + j[None, :]).clamp(max=N - 1)
    qp = q[rows].transpose(1, 2).float()                                            # [B, H, Mq, D]
    kpos = torch.arange(max_seq_len, device=q.device)
    ok = kpos[None, None, :] < seq_lens.long()[:, None, None]                      # [B, 1, L]
    q_pos = seq_lens.long()[:, None] - q_lens_l[:, None] + j[None, :]              # [B, Mq]
    if causal:
        ok = ok & (kpos[None, None, :] <= q_pos[:, :, None])                       # [B, Mq, L]
    if window > 0:
        ok = ok & (kpos[None, None, :] > q_pos[:, :, None] - window)
    ok = ok.expand(B, max_q_len, max_seq_len)[:, None]                             # [B, 1, Mq, L]
    # torch's fused attention (GQA without repeating K/V); padded query rows are all masked and dropped
    o = F.scaled_dot_product_attention(qp, k, v, attn_mask=ok, scale=scale, enable_gqa=True).transpose(1, 2)
    out = torch.empty_like(q)
    out[rows[valid_q]] = o[valid_q].to(q.dtype)
    return out
