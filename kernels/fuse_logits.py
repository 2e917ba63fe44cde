"""Triton kernels for ops.fuse_logits: pass 1 takes max(large[:V']) for the plausibility mask
(skipped when there is no mask), pass 2 reads the inputs again and writes
``w_l*large + w_s*small + w_f*small_ft``, masked. Semantics: fsgen_engine/reference/fuse_logits.py.

Small batches on a GPU split each row over S column splits (grid B x S): the split maxima go through
a [B, S] workspace and every pass-2 program merges the S maxima of its row, so a batch of one
reads its row with the whole GPU instead of one SM. Large batches keep one program per row.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _fuse_chunk(lrow, srow, frow, orow, offs, inb, w_l, w_s, w_f, thr, USE_MASK: tl.constexpr, HAS_FT: tl.constexpr):
    """Write ``w_l*large + w_s*small + w_f*small_ft`` for the columns ``offs``, masked below ``thr``."""
    l = tl.load(lrow + offs, mask=inb, other=0.0).to(tl.float32)
    s = tl.load(srow + offs, mask=inb, other=0.0).to(tl.float32)
    # a zero weight drops its input, so -inf there cannot become 0 * -inf = NaN
    acc = tl.where(w_l != 0.0, w_l * l, 0.0) + tl.where(w_s != 0.0, w_s * s, 0.0)
    if HAS_FT:
        f = tl.load(frow + offs, mask=inb, other=0.0).to(tl.float32)
        acc += tl.where(w_f != 0.0, w_f * f, 0.0)
    if USE_MASK:
        acc = tl.where(l < thr, float("-inf"), acc)
    tl.store(orow + offs, acc, mask=inb)


@triton.jit
def _fuse_logits_kernel(l_ptr, s_ptr, f_ptr, out_ptr, stride_l, stride_s, stride_f, V, w_l, w_s, w_f, log_alpha,
                        USE_MASK: tl.constexpr, HAS_FT: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    lanes = tl.arange(0, BLOCK)
    lrow = l_ptr + row * stride_l
    srow = s_ptr + row * stride_s
    orow = out_ptr + row * V
    NEG: tl.constexpr = float("-inf")
    thr = NEG
    if USE_MASK:
        mx = tl.full([BLOCK], NEG, tl.float32)
        for start in range(0, V, BLOCK):
            offs = start + lanes
            x = tl.load(lrow + offs, mask=offs < V, other=NEG).to(tl.float32)
            mx = tl.maximum(mx, tl.where(x == x, x, NEG))  # NaN never sets the max
        thr = tl.max(mx, axis=0) + log_alpha
    for start in range(0, V, BLOCK):
        offs = start + lanes
        inb = offs < V
        _fuse_chunk(lrow, srow, f_ptr + row * stride_f, orow, offs, inb, w_l, w_s, w_f, thr, USE_MASK, HAS_FT)


@triton.jit
def _split_max_kernel(l_ptr, stride_l, V, CH, ws_ptr, S, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    sp = tl.program_id(1)
    lanes = tl.arange(0, BLOCK)
    NEG: tl.constexpr = float("-inf")
    mx = tl.full([BLOCK], NEG, tl.float32)
    lo = sp * CH
    hi = tl.minimum(lo + CH, V)
    for start in range(lo, hi, BLOCK):
        offs = start + lanes
        x = tl.load(l_ptr + row.to(tl.int64) * stride_l + offs, mask=offs < hi, other=NEG).to(tl.float32)
        mx = tl.maximum(mx, tl.where(x == x, x, NEG))
    tl.store(ws_ptr + row * S + sp, tl.max(mx, axis=0))


@triton.jit
def _split_fuse_kernel(l_ptr, s_ptr, f_ptr, out_ptr, stride_l, stride_s, stride_f, V, CH, ws_ptr, S, w_l, w_s, w_f,
                       log_alpha, USE_MASK: tl.constexpr, HAS_FT: tl.constexpr, BLOCK: tl.constexpr,
                       SMAX: tl.constexpr):
    row = tl.program_id(0)
    sp = tl.program_id(1)
    r64 = row.to(tl.int64)
    lanes = tl.arange(0, BLOCK)
    NEG: tl.constexpr = float("-inf")
    thr = NEG
    if USE_MASK:
        j = tl.arange(0, SMAX)
        thr = tl.max(tl.load(ws_ptr + row * S + j, mask=j < S, other=NEG), axis=0) + log_alpha
    lo = sp * CH
    hi = tl.minimum(lo + CH, V)
    for start in range(lo, hi, BLOCK):
        offs = start + lanes
        inb = offs < hi
        _fuse_chunk(l_ptr + r64 * stride_l, s_ptr + r64 * stride_s, f_ptr + r64 * stride_f, out_ptr + r64 * V, offs,
                    inb, w_l, w_s, w_f, thr, USE_MASK, HAS_FT)


def fuse_logits_triton(large: torch.Tensor, small: torch.Tensor, small_ft: torch.Tensor | None, w_l: float,
                       w_s: float, w_f: float, log_alpha: float, out: torch.Tensor, *,
                       splits: int | None = None) -> None:
    """Write the fused ``out [B, V']`` (float32, contiguous). ``splits``: column splits per row (None:
    chosen from the batch and the GPU's size; 1 = one program per row, the only choice off a GPU)."""
    B, V = out.shape
    use_mask = log_alpha != float("-inf")
    ft = small_ft if small_ft is not None else small
    if splits is None:
        splits = 1
        if out.is_cuda:
            from fsgen_engine.kernels.token_stats import _num_sms
            from fsgen_engine.kernels.token_stats_split import num_splits

            index = out.device.index if out.device.index is not None else torch.cuda.current_device()
            splits = num_splits(B, V, 1024, 4 * _num_sms(index))
    if splits > 1:
        block = 1024
        ch = triton.cdiv(triton.cdiv(V, splits), block) * block
        s = triton.cdiv(V, ch)
        ws = torch.empty(B * s, dtype=torch.float32, device=out.device)
        if use_mask:
            _split_max_kernel[(B, s)](large, large.stride(0), V, ch, ws, s, BLOCK=block, num_warps=4)
        _split_fuse_kernel[(B, s)](large, small, ft, out, large.stride(0), small.stride(0), ft.stride(0), V, ch, ws,
                                   s, float(w_l), float(w_s), float(w_f), float(log_alpha if use_mask else 0.0),
                                   USE_MASK=use_mask, HAS_FT=small_ft is not None, BLOCK=block,
                                   SMAX=max(16, triton.next_power_of_2(s)), num_warps=4)
        return
    block = min(triton.next_power_of_2(V), 2048)
    _fuse_logits_kernel[(B,)](large, small, ft, out, large.stride(0), small.stride(0), ft.stride(0), V,
                              float(w_l), float(w_s), float(w_f), float(log_alpha if use_mask else 0.0),
                              USE_MASK=use_mask, HAS_FT=small_ft is not None, BLOCK=block,
                              num_warps=8 if block >= 2048 else 4)
