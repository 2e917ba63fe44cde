"""ops.fuse_logits: combine large- and small-model logits for collaborative decoding.

``fuse_logits(large [B, Vl], small [B, Vs], small_ft [B, Vf] | None, method=...) -> [B, V']``
float32, ``V' = min`` of the vocab sizes (models of one family pad their vocab differently).
Inputs may each be float32 / float16 / bfloat16 with any row stride (stride 1 along V).

Methods (all are ``w_l*large + w_s*small + w_f*small_ft``; masked methods then set to ``-inf``
every token with ``large < log(alpha) + max(large[:, :V'])``):

=====================  ========================================  ===========  ===============
method                 formula                                   mask         defaults
=====================  ========================================  ===========  ===============
``contrastive``        ``small + beta*(large - small)`` (FS-GEN)  yes          alpha 0.1, beta 0.5
``contrastive_obrien`` ``(1+beta)*large - beta*small``            yes          alpha 0.1, beta 0.5
``proxy``              ``large + alpha*(small_ft - small)``       no           alpha 1.0
``weighted``           ``weights=(w_l, w_s[, w_f])``              yes          alpha 0.1
=====================  ========================================  ===========  ===============

A zero weight drops its input (a ``-inf`` there stays out of the sum). NaN entries of ``large`` are
ignored by the row max and propagate only to their own position. See
``fsgen_engine.reference.fuse_logits``.
"""
from __future__ import annotations

import math
import numbers

import torch

from fsgen_engine.ops._dispatch import Op
from fsgen_engine.ops._native import call_native, dtype_code
from fsgen_engine.ops._split import split_args
from fsgen_engine.ops._validate import FLOAT_DTYPES, check_last_dim_contiguous, check_nonempty, check_tensor
from fsgen_engine.reference.fuse_logits import fuse_logits_reference, preset_weights

OP = Op("fuse_logits", native=True, triton=True)
METHODS = ("contrastive", "contrastive_obrien", "proxy", "weighted")
_DEFAULT_ALPHA = {"contrastive": 0.1, "contrastive_obrien": 0.1, "proxy": 1.0, "weighted": 0.1}


def _finite(name: str, value, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{OP.name}: {name}={value!r} must be a finite number; {hint}")
    return float(value)


def resolve_weights(method: str, alpha=None, beta=None, weights=None) -> tuple[float, float, float, float]:
    """Validate the method parameters and return ``(w_l, w_s, w_f, log_alpha)``."""
    if method not in METHODS:
        raise ValueError(f"{OP.name}: method={method!r} is not a fusion method; use one of {', '.join(METHODS)}")
    if alpha is None:
        alpha = _DEFAULT_ALPHA[method]
    if method == "proxy":
        alpha = _finite("alpha", alpha, "proxy tuning uses large + alpha*(small_ft - small), e.g. alpha=1.0")
    else:
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 < float(alpha) <= 1.0:
            raise ValueError(f"{OP.name}: alpha={alpha!r} is out of range (0, 1]; it is the plausibility cut-off "
                             f"(tokens below alpha * max prob of the large model are masked), e.g. alpha=0.1")
        alpha = float(alpha)
    if method in ("contrastive", "contrastive_obrien"):
        beta = _finite("beta", 0.5 if beta is None else beta, "e.g. beta=0.5")
    if method == "weighted":
        if weights is None or not isinstance(weights, (tuple, list)) or len(weights) not in (2, 3):
            raise ValueError(f"{OP.name}: method='weighted' needs weights=(w_l, w_s) or (w_l, w_s, w_ft), got {weights!r}")
        weights = tuple(_finite(f"weights[{i}]", w, "weights must be finite numbers") for i, w in enumerate(weights))
    elif weights is not None:
        raise ValueError(f"{OP.name}: weights={weights!r} is only used with method='weighted' (got method={method!r})")
    return preset_weights(method, alpha, beta, weights)


def fuse_logits(large: torch.Tensor, small: torch.Tensor, small_ft: torch.Tensor | None = None, *, method: str,
                alpha: float | None = None, beta: float | None = None, weights=None,
                backend: str = "auto") -> torch.Tensor:
    """Fused logits ``[B, V']`` float32 (see the module docstring for methods and semantics)."""
    w_l, w_s, w_f, log_alpha = resolve_weights(method, alpha, beta, weights)
    needs_ft = w_f != 0.0
    if needs_ft and small_ft is None:
        what = "proxy tuning" if method == "proxy" else "a non-zero weights[2]"
        raise ValueError(f"{OP.name}: method={method!r} needs small_ft (the small fine-tuned model's logits [B, V]) for "
                         f"{what}; pass small_ft=...")
    check_tensor(OP.name, "large", large, ndim=2, dtypes=FLOAT_DTYPES)
    inputs = {"large": large, "small": small}
    if small_ft is not None:
        inputs["small_ft"] = small_ft
    for name, t in inputs.items():
        check_tensor(OP.name, name, t, ndim=2, dtypes=FLOAT_DTYPES, device=large.device)
        check_nonempty(OP.name, name, t, 1)
        check_last_dim_contiguous(OP.name, name, t)
        if t.shape[0] != large.shape[0]:
            raise ValueError(f"{OP.name}: {name} has {t.shape[0]} rows but large has {large.shape[0]}; "
                             f"all inputs need the same batch size B")
    return OP(large.device, backend, large, small, small_ft, w_l, w_s, w_f, log_alpha)


@OP.impl("reference")
def _reference(backend, large, small, small_ft, w_l, w_s, w_f, log_alpha):
    return fuse_logits_reference(large, small, small_ft, w_l, w_s, w_f, log_alpha)


@OP.impl("cpu", "cuda", "triton")
def _kernel(backend, large, small, small_ft, w_l, w_s, w_f, log_alpha):
    B = large.shape[0]
    V = min(t.shape[1] for t in (large, small, small_ft) if t is not None)
    out = torch.empty((B, V), dtype=torch.float32, device=large.device)
    ft = small_ft if w_f != 0.0 else None  # a zero weight drops its input: the kernels never read it
    if B > 0 and backend == "triton":
        from fsgen_engine.kernels.fuse_logits import fuse_logits_triton

        fuse_logits_triton(large, small, ft, w_l, w_s, w_f, log_alpha, out)
    elif B > 0:
        small_ft_ptr = 0 if ft is None else ft.data_ptr()
        ft = small if ft is None else ft  # strides and dtype of an input that is not read: any valid ones
        # CUDA: 256-thread blocks, 4 columns per thread per step: at least 1024 columns per split.
        split, _ws = (split_args(OP.name, large.device, B, V, min_cols=1024, blocks_per_sm=4) if backend == "cuda"
                      else ({}, None))
        call_native(OP.name, backend, large.device, large=large.data_ptr(), large_stride=large.stride(0),
                    large_dtype=dtype_code(large), small=small.data_ptr(), small_stride=small.stride(0),
                    small_dtype=dtype_code(small), small_ft=small_ft_ptr,
                    small_ft_stride=ft.stride(0), small_ft_dtype=dtype_code(ft), batch=B, vocab=V, w_large=w_l,
                    w_small=w_s, w_small_ft=w_f, log_alpha=log_alpha, out=out.data_ptr(), **split)
    return out
