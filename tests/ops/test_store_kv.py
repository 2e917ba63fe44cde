"""ops.store_kv: every backend against the reference; slot -1 skipped; validation."""
import pytest
import torch

from fsgen_engine.ops import store_kv
from fsgen_engine.reference.store_kv import store_kv_reference


@pytest.mark.parametrize("backend", ["auto", "triton", "reference"])
@pytest.mark.parametrize("page_size,Hkv,D,dtype", [(1, 2, 64, torch.float32), (4, 3, 80, torch.float16),
                                                    (16, 1, 96, torch.bfloat16), (4, 2, 128, torch.float32)])
def test_store_kv_matches_reference(backend, page_size, Hkv, D, dtype, device):
    P, N = 16, 11
    slots = torch.randperm(P * page_size)[:N]
    slots[[2, 7]] = -1
    kc = torch.randn(P, page_size, Hkv, D, dtype=dtype, device=device)
    vc = torch.randn_like(kc)
    # k/v as strided views of a fused qkv projection, in float32 (cast to the cache dtype on store)
    qkv = torch.randn(N, 3, Hkv, D, device=device)
    k, v = qkv[:, 1], qkv[:, 2]
    kr, vr = kc.clone(), vc.clone()
    store_kv_reference(k, v, kr, vr, slots.to(device))
    store_kv(k, v, kc, vc, slots.to(device=device, dtype=torch.int32), backend=backend)
    # The interpreter casts float32 -> bf16 by truncation (GPUs round to nearest): allow 1 ulp there.
    tol = 2 ** -7 if dtype == torch.bfloat16 else 0
    torch.testing.assert_close(kc, kr, atol=0, rtol=tol)
    torch.testing.assert_close(vc, vr, atol=0, rtol=tol)


def test_reference_semantics():
    kc = torch.zeros(3, 2, 1, 64)
    vc = torch.zeros(3, 2, 1, 64)
    k = torch.arange(3.0)[:, None, None].expand(3, 1, 64)
    store_kv_reference(k, -k, kc, vc, torch.tensor([5, -1, 0]))
    assert kc[2, 1].eq(0).all() and kc[0, 0].eq(2).all()
    assert vc[0, 0].eq(-2).all() and kc.count_nonzero() == 64 and vc.count_nonzero() == 64


def test_validation_errors():
    kc, vc = torch.zeros(4, 2, 2, 64), torch.zeros(4, 2, 2, 64)
    k = torch.randn(3, 2, 64)
    slots = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="slot_mapping"):
        store_kv(k, k, kc, vc, slots[:2])
    with pytest.raises(TypeError, match="slot_mapping"):
        store_kv(k, k, kc, vc, slots.float())
    with pytest.raises(ValueError, match="Hkv"):
        store_kv(torch.randn(3, 1, 64), torch.randn(3, 1, 64), kc, vc, slots)
    with pytest.raises(ValueError, match="v has shape"):
        store_kv(k, k[:2], kc, vc, slots)
    with pytest.raises(ValueError, match="v_cache"):
        store_kv(k, k, kc, vc.half(), slots)
    with pytest.raises(ValueError, match="stride 1"):
        store_kv(k.transpose(1, 2).contiguous().transpose(1, 2), k, kc, vc, slots)
    with pytest.raises(TypeError, match="k_cache"):
        store_kv(k, k, kc.long(), vc, slots)
