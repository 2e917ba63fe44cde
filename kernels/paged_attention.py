"""Triton kernel for ops.paged_attention: ragged queries over paged K/V, online softmax.

Grid ``(B, query blocks, Hkv * splits)``. One program takes ``BLOCK_M`` query tokens of one sequence
times the ``GROUP`` query heads sharing one KV head (GQA: each K/V tile is loaded once for the whole
group), flattened into ``ROWS >= 16`` rows so both products run on tensor cores even for decode.
Keys are walked in ``BLOCK_N`` tiles; each key's page comes from the page table, so any page size
works (1, 16, 256, ...). The head dim is padded to a power of 2 with masks (80, 96).
Flash-decoding: when the grid is too small to fill the GPU (decode / verification at small batch,
long context), the KV range is cut into ``splits``; each split writes its partial (max, sum, acc)
and ``_reduce_kernel`` merges them. Semantics: fsgen_engine/reference/paged_attention.py.
Sliding window (``window > 0``): a program starts its KV walk at the tile holding the first key its
first query can see, so a long context costs ``O(window)`` per query, not ``O(seq_len)``; splits then
cut that span (not ``[0, seq_len)``), so flash-decoding still spreads the work that is actually done.
Bounds: checked on the device, without a sync, so that no access leaves the tensors: a sequence's
query rows are cut at ``N`` (bad ``cu_q_lens``), and a key past the page-table row or on a page id
outside ``[0, P)`` is read from page 0 (per-row or per-key masks instead cost registers: the fp32
prefill and fp16 decode tiles then spill on sm_90). The output of such a sequence is meaningless; FSGEN_CHECK_BOUNDS=1 makes
ops.paged_attention check on the host first and raise.
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634


@triton.jit
def _attn_kernel(Q, K, V, O, PT, SEQ_LENS, CU_Q, MS, LS, ACCS,
                 scale_log2, split_len, num_splits, N, H, WINDOW, num_pages, max_pages,
                 stride_qn, stride_qh, stride_kp, stride_ks, stride_kh, stride_vp, stride_vs, stride_vh,
                 stride_on, stride_oh, stride_pt,
                 PAGE_SIZE: tl.constexpr, GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, BLOCK_M: tl.constexpr,
                 ROWS: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                 CAUSAL: tl.constexpr, SPLIT: tl.constexpr, IEEE: tl.constexpr, DOT_F32: tl.constexpr):
    b = tl.program_id(0)
    qb = tl.program_id(1)
    kvh = tl.program_id(2) // num_splits
    sp = tl.program_id(2) % num_splits
    q_start = tl.load(CU_Q + b)
    # Bounds check on the scalars (free, unlike a per-row mask): bad cu_q_lens never reach past q / out.
    q_len = tl.minimum(tl.load(CU_Q + b + 1), N) - q_start
    if (qb * BLOCK_M >= q_len) | (q_start < 0):
        return
    seq_len = tl.load(SEQ_LENS + b)

    r = tl.arange(0, ROWS)
    m = qb * BLOCK_M + r // GROUP_PAD
    g = r % GROUP_PAD
    row_ok = (r // GROUP_PAD < BLOCK_M) & (g < GROUP) & (m < q_len)
    tok = (q_start + m).to(tl.int64)
    head = kvh * GROUP + g
    d = tl.arange(0, BLOCK_D)
    d_ok = d < HEAD_DIM
    q = tl.load(Q + tok[:, None] * stride_qn + head[:, None] * stride_qh + d[None, :],
                mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    if DOT_F32:
        q = q.to(tl.float32)
    q_pos = seq_len - q_len + m
    # Lowest key each row may see; 0 (no bound) without a window. Keys are never negative.
    win_lo = tl.where(WINDOW > 0, q_pos - WINDOW + 1, 0)

    kv_hi = seq_len
    if CAUSAL:
        kv_hi = tl.minimum(seq_len, seq_len - q_len + tl.minimum(q_len, (qb + 1) * BLOCK_M))
    # The first query of the block has the lowest bound; tiles wholly below it are never loaded.
    first_lo = tl.maximum(seq_len - q_len + qb * BLOCK_M - WINDOW + 1, 0)
    kv_lo = tl.where(WINDOW > 0, first_lo, 0) // BLOCK_N * BLOCK_N
    lo = kv_lo + sp * split_len
    hi = tl.minimum(lo + split_len, kv_hi)

    m_i = tl.full((ROWS,), float("-inf"), tl.float32)
    l_i = tl.zeros((ROWS,), tl.float32)
    acc = tl.zeros((ROWS, BLOCK_D), tl.float32)
    offs_n = tl.arange(0, BLOCK_N)
    pt_row = PT + b.to(tl.int64) * stride_pt
    for start in range(lo, hi, BLOCK_N):
        n = start + offs_n
        n_ok = n < hi
        slot = n // PAGE_SIZE
        page = tl.load(pt_row + slot, mask=n_ok & (slot < max_pages), other=0)
        # Device-side bounds check (no host sync): a page id outside [0, num_pages) is read as page 0
        # (a key past the page-table row too), so no load leaves the cache.
        page = tl.where((page >= 0) & (page < num_pages), page, 0).to(tl.int64)
        off = (n % PAGE_SIZE).to(tl.int64)
        kv_mask = n_ok[:, None] & d_ok[None, :]
        k = tl.load(K + page[:, None] * stride_kp + off[:, None] * stride_ks + kvh * stride_kh + d[None, :],
                    mask=kv_mask, other=0.0)
        if DOT_F32:
            k = k.to(tl.float32)
        if IEEE:
            s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale_log2
        else:
            s = tl.dot(q, tl.trans(k)) * scale_log2
        ok = n_ok[None, :] & (n[None, :] >= win_lo[:, None])
        if CAUSAL:
            ok = ok & (n[None, :] <= q_pos[:, None])
        s = tl.where(ok, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_safe[:, None])
        alpha = tl.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(V + page[:, None] * stride_vp + off[:, None] * stride_vs + kvh * stride_vh + d[None, :],
                    mask=kv_mask, other=0.0)
        if DOT_F32:
            v = v.to(tl.float32)
        if IEEE:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
        else:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new

    st_mask = row_ok[:, None] & d_ok[None, :]
    if SPLIT:
        base = sp.to(tl.int64) * N * H + tok * H + head
        tl.store(MS + base, m_i, mask=row_ok)
        tl.store(LS + base, l_i, mask=row_ok)
        tl.store(ACCS + base[:, None] * HEAD_DIM + d[None, :], acc, mask=st_mask)
    else:
        out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
        tl.store(O + tok[:, None] * stride_on + head[:, None] * stride_oh + d[None, :],
                 out.to(O.dtype.element_ty), mask=st_mask)


@triton.jit
def _reduce_kernel(O, MS, LS, ACCS, N, H, num_splits, stride_on, stride_oh,
                   HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, SPLITS_PAD: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    s = tl.arange(0, SPLITS_PAD)
    s_ok = s < num_splits
    d = tl.arange(0, BLOCK_D)
    d_ok = d < HEAD_DIM
    base = s.to(tl.int64) * N * H + t * H + h
    ms = tl.load(MS + base, mask=s_ok, other=float("-inf"))
    ls = tl.load(LS + base, mask=s_ok, other=0.0)
    accs = tl.load(ACCS + base[:, None] * HEAD_DIM + d[None, :], mask=s_ok[:, None] & d_ok[None, :], other=0.0)
    mx = tl.max(ms, 0)
    mx = tl.where(mx == float("-inf"), 0.0, mx)
    w = tl.exp2(ms - mx)
    denom = tl.sum(w * ls, 0)
    out = tl.sum(w[:, None] * accs, 0) / tl.where(denom > 0, denom, 1.0)
    tl.store(O + t * stride_on + h * stride_oh + d, out.to(O.dtype.element_ty), mask=d_ok)


@functools.lru_cache(maxsize=None)
def _num_sms(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def paged_attention_triton(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, page_table: torch.Tensor,
                           seq_lens: torch.Tensor, cu_q_lens: torch.Tensor, *, scale: float, causal: bool,
                           max_q_len: int, max_seq_len: int, window: int = 0, num_splits: int | None = None,
                           block_n: int | None = None) -> torch.Tensor:
    """Launch the kernel(s); inputs are validated by ops.paged_attention. ``window``: 0 = full attention,
    else the sliding window (see the reference). ``num_splits``/``block_n`` override the heuristics (tests);
    splits that fall past a program's keys are empty and merge as zero weight."""
    N, H, D = q.shape
    page_size, Hkv = k_cache.shape[1], k_cache.shape[2]
    B = seq_lens.shape[0]
    out = torch.empty_like(q)
    if N == 0 or B == 0 or max_q_len == 0:
        return out
    group = H // Hkv
    group_pad = triton.next_power_of_2(group)
    on_gpu = q.is_cuda
    target_rows = 64 if on_gpu else 16
    block_m = max(1, min(triton.next_power_of_2(max_q_len), max(1, target_rows // group_pad)))
    rows = max(16, block_m * group_pad)
    # Tiles that fit in registers on Hopper (ptxas spills otherwise; tests/toolchain/test_triton_compiles_sm90.py
    # checks every case under the pinned and the lowest supported Triton). 16-bit inputs: 64 keys, 4 warps.
    # fp32 (IEEE, no tensor cores) holds more per thread: tiles of more than 16 rows (multi-query) take 32 keys
    # and 8 warps (4 warps spill at head dims 64-128 under Triton 3.6); 16-row tiles (decode, short
    # verification without GQA) keep 64 keys and 4 warps, which fit (32 keys there spill), except single-query
    # decode at a padded head dim (D=80: 7.6 KB spilled under Triton 3.6 with 4 warps).
    padded_d = D != triton.next_power_of_2(D)
    wide_fp32 = on_gpu and q.dtype == torch.float32 and (rows > 16 or (block_m == 1 and padded_d))
    num_warps = 8 if wide_fp32 else 4
    if block_n is None:
        block_n = (32 if wide_fp32 else 64) if on_gpu else 16
    q_blocks = triton.cdiv(max_q_len, block_m)
    max_seq_len = max(int(max_seq_len), 1)
    # Keys one program walks at most: with a causal window, from the tile of its first query's lowest
    # key to its last query, so splits are sized on that, not on the whole context.
    kv_span = max_seq_len
    if window > 0 and causal:
        kv_span = min(max_seq_len, window + min(block_m, max_q_len) - 1 + block_n - 1)
    if num_splits is None:
        num_splits = 1
        if on_gpu:
            programs = B * q_blocks * Hkv
            sms = _num_sms(q.device.index if q.device.index is not None else torch.cuda.current_device())
            if programs < sms:
                num_splits = min(triton.cdiv(2 * sms, programs), triton.cdiv(kv_span, 4 * block_n), 64)
                num_splits = max(num_splits, 1)
    split_len = triton.cdiv(triton.cdiv(kv_span, num_splits), block_n) * block_n
    num_splits = triton.cdiv(kv_span, split_len)
    split = num_splits > 1
    if split:
        ms = torch.empty((num_splits, N, H), dtype=torch.float32, device=q.device)
        ls = torch.empty_like(ms)
        accs = torch.empty((num_splits, N, H, D), dtype=torch.float32, device=q.device)
    else:
        ms = ls = accs = out  # unused
    # The interpreter's bf16 tl.dot is wrong (numpy has no bf16): upcast there; GPUs use bf16 MMA.
    dot_f32 = q.dtype == torch.bfloat16 and not on_gpu
    ieee = q.dtype == torch.float32 or dot_f32  # fp32 must not silently drop to tf32
    grid = (B, q_blocks, Hkv * num_splits)
    _attn_kernel[grid](
        q, k_cache, v_cache, out, page_table, seq_lens, cu_q_lens, ms, ls, accs,
        float(scale) * LOG2E, split_len, num_splits, N, H, int(window), k_cache.shape[0], page_table.shape[1],
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), out.stride(0), out.stride(1), page_table.stride(0),
        PAGE_SIZE=page_size, GROUP=group, GROUP_PAD=group_pad, BLOCK_M=block_m, ROWS=rows, BLOCK_N=block_n,
        HEAD_DIM=D, BLOCK_D=triton.next_power_of_2(D), CAUSAL=bool(causal), SPLIT=split, IEEE=ieee, DOT_F32=dot_f32,
        num_warps=num_warps)
    if split:
        _reduce_kernel[(N, H)](out, ms, ls, accs, N, H, num_splits, out.stride(0), out.stride(1),
                               HEAD_DIM=D, BLOCK_D=triton.next_power_of_2(D),
                               SPLITS_PAD=max(2, triton.next_power_of_2(num_splits)), num_warps=4)
    return out
