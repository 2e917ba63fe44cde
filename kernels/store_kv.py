"""Triton kernel for ops.store_kv: scatter new K/V rows into their page slots.

One program per ``BLOCK_T`` tokens; each moves ``[Hkv, D]`` of K and of V (padded to powers of 2
with masks). Slot ``-1`` rows are skipped, so padded batches need no compaction; so are slots
outside the cache (a device-side bounds check, no host sync).
Semantics: fsgen_engine/reference/store_kv.py.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _store_kv_kernel(K, V, KC, VC, SLOTS, N, NUM_SLOTS,
                     stride_kn, stride_kh, stride_vn, stride_vh,
                     stride_kcp, stride_kcs, stride_kch, stride_vcp, stride_vcs, stride_vch,
                     PAGE_SIZE: tl.constexpr, HKV: tl.constexpr, HEAD_DIM: tl.constexpr,
                     BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr):
    for i in range(BLOCK_T):
        t = tl.program_id(0) * BLOCK_T + i
        if t < N:
            slot = tl.load(SLOTS + t).to(tl.int64)
            if (slot >= 0) & (slot < NUM_SLOTS):  # device-side bounds check: a bad slot writes nothing
                page = slot // PAGE_SIZE
                off = slot % PAGE_SIZE
                h = tl.arange(0, BLOCK_H)
                d = tl.arange(0, BLOCK_D)
                mask = (h < HKV)[:, None] & (d < HEAD_DIM)[None, :]
                t64 = t.to(tl.int64)
                k = tl.load(K + t64 * stride_kn + h[:, None] * stride_kh + d[None, :], mask=mask)
                v = tl.load(V + t64 * stride_vn + h[:, None] * stride_vh + d[None, :], mask=mask)
                tl.store(KC + page * stride_kcp + off * stride_kcs + h[:, None] * stride_kch + d[None, :],
                         k.to(KC.dtype.element_ty), mask=mask)
                tl.store(VC + page * stride_vcp + off * stride_vcs + h[:, None] * stride_vch + d[None, :],
                         v.to(VC.dtype.element_ty), mask=mask)


def store_kv_triton(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                    slot_mapping: torch.Tensor) -> None:
    N, Hkv, D = k.shape
    if N == 0:
        return
    # One token per program on a GPU (enough parallelism); batch tokens under the interpreter.
    block_t = 1 if k.is_cuda else 16
    _store_kv_kernel[(triton.cdiv(N, block_t),)](
        k, v, k_cache, v_cache, slot_mapping, N, k_cache.shape[0] * k_cache.shape[1],
        k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        PAGE_SIZE=k_cache.shape[1], HKV=Hkv, HEAD_DIM=D, BLOCK_H=triton.next_power_of_2(Hkv),
        BLOCK_D=triton.next_power_of_2(D), BLOCK_T=block_t, num_warps=4 if Hkv * D >= 1024 else 1)
