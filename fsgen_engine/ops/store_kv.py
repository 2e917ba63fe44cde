"""ops.store_kv: write a step's new keys/values into their KV page slots."""
from __future__ import annotations

import torch

from fsgen_engine.ops._dispatch import Op
from fsgen_engine.ops._validate import FLOAT_DTYPES, INDEX_DTYPES, check_last_dim_contiguous, check_tensor
from fsgen_engine.reference.store_kv import store_kv_reference

OP = Op("store_kv", native=False, triton=True)
NAME = OP.name


def store_kv(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
             slot_mapping: torch.Tensor, *, backend: str = "auto") -> None:
    """Write ``k``/``v`` ``[N, Hkv, D]`` into ``k_cache``/``v_cache`` ``[P, S, Hkv, D]`` in place.

    Row ``i`` goes to slot ``slot_mapping[i]`` (int32/int64 ``[N]``) = page ``slot // S``, offset
    ``slot % S``; slot ``-1`` skips the row (padding). Values are cast to the cache dtype
    (float32/float16/bfloat16). Slots must be distinct and in ``[0, P * S)``: the reference backend
    raises on others; the Triton kernel checks them on the device (no host sync) and skips such a row.
    """
    check_tensor(NAME, "k", k, ndim=3, dtypes=FLOAT_DTYPES)
    device = k.device
    check_tensor(NAME, "v", v, ndim=3, dtypes=FLOAT_DTYPES, device=device)
    check_tensor(NAME, "k_cache", k_cache, ndim=4, dtypes=FLOAT_DTYPES, device=device)
    check_tensor(NAME, "v_cache", v_cache, ndim=4, dtypes=FLOAT_DTYPES, device=device)
    check_tensor(NAME, "slot_mapping", slot_mapping, ndim=1, dtypes=INDEX_DTYPES, device=device)
    if v.shape != k.shape:
        raise ValueError(f"{NAME}: v has shape {tuple(v.shape)} but k has {tuple(k.shape)}; they must match")
    if v_cache.shape != k_cache.shape or v_cache.dtype != k_cache.dtype:
        raise ValueError(f"{NAME}: v_cache {tuple(v_cache.shape)}/{v_cache.dtype} must match k_cache "
                         f"{tuple(k_cache.shape)}/{k_cache.dtype}")
    if tuple(k.shape[1:]) != tuple(k_cache.shape[2:]):
        raise ValueError(f"{NAME}: k rows are [Hkv, D]={tuple(k.shape[1:])} but the cache holds "
                         f"[Hkv, D]={tuple(k_cache.shape[2:])}; pass this layer's K/V for this model's cache")
    if slot_mapping.shape[0] != k.shape[0]:
        raise ValueError(f"{NAME}: slot_mapping has {slot_mapping.shape[0]} entries but k has {k.shape[0]} rows")
    for name, t in (("k", k), ("v", v), ("k_cache", k_cache), ("v_cache", v_cache)):
        check_last_dim_contiguous(NAME, name, t)
    OP(device, backend, k, v, k_cache, v_cache, slot_mapping)


@OP.impl("reference")
def _reference(backend, k, v, k_cache, v_cache, slot_mapping):
    store_kv_reference(k, v, k_cache, v_cache, slot_mapping)


@OP.impl("triton")
def _triton(backend, k, v, k_cache, v_cache, slot_mapping):
    from fsgen_engine.kernels.store_kv import store_kv_triton

    store_kv_triton(k, v, k_cache, v_cache, slot_mapping.contiguous())
