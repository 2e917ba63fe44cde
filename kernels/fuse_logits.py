"""Triton kernel for ops.fuse_logits: one program per row; pass 1 takes max(large[:V']) for the
plausibility mask (skipped when there is no mask), pass 2 reads the inputs again and writes
``w_l*large + w_s*small + w_f*small_ft``, masked. Semantics: fsgen_engine/reference/fuse_logits.py.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


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
        l = tl.load(lrow + offs, mask=inb, other=0.0).to(tl.float32)
        s = tl.load(srow + offs, mask=inb, other=0.0).to(tl.float32)
        # a zero weight drops its input, so -inf there cannot become 0 * -inf = NaN
        acc = tl.where(w_l != 0.0, w_l * l, 0.0) + tl.where(w_s != 0.0, w_s * s, 0.0)
        if HAS_FT:
            f = tl.load(f_ptr + row * stride_f + offs, mask=inb, other=0.0).to(tl.float32)
            acc += tl.where(w_f != 0.0, w_f * f, 0.0)
        if USE_MASK:
            acc = tl.where(l < thr, NEG, acc)
        tl.store(orow + offs, acc, mask=inb)


def fuse_logits_triton(large: torch.Tensor, small: torch.Tensor, small_ft: torch.Tensor | None, w_l: float,
                       w_s: float, w_f: float, log_alpha: float, out: torch.Tensor) -> None:
    """Write the fused ``out [B, V']`` (float32, contiguous) in one launch."""
    B, V = out.shape
    use_mask = log_alpha != float("-inf")
    ft = small_ft if small_ft is not None else small
    block = min(triton.next_power_of_2(V), 2048)
    _fuse_logits_kernel[(B,)](large, small, ft, out, large.stride(0), small.stride(0), ft.stride(0), V,
                              float(w_l), float(w_s), float(w_f), float(log_alpha if use_mask else 0.0),
                              USE_MASK=use_mask, HAS_FT=small_ft is not None, BLOCK=block,
                              num_warps=8 if block >= 2048 else 4)
