"""The CUDA entry points make the tensors' device current (``_C`` has no torch device guard), so ops
run on any GPU, leave the caller's current device alone, and refuse a mix of devices clearly."""
import pytest
import torch

from fsgen_engine import ops
from fsgen_engine.ops._dispatch import available_backends
from fsgen_engine.reference.fuse_logits import fuse_logits_reference, preset_weights
from fsgen_engine.reference.token_stats import token_stats_reference

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


def native_cuda(op):
    if "cuda" not in available_backends(torch.device("cuda"), native=op, triton_kernel=False):
        pytest.skip("fsgen_engine._C was built without CUDA")


@pytest.mark.parametrize("index", [0, 1])
def test_native_ops_on_any_gpu_keep_the_current_device(index):
    if index >= torch.cuda.device_count():
        pytest.skip(f"needs {index + 1} GPUs")
    native_cuda("token_stats")
    dev = torch.device("cuda", index)
    x = torch.randn(5, 3001) * 3
    x[1, 7] = float("inf")
    before = torch.cuda.current_device()
    stats = ops.token_stats(x.to(dev), backend="cuda")
    want = token_stats_reference(x.double())
    assert torch.equal(stats.argmax.cpu(), want[3])
    torch.testing.assert_close(stats.entropy.cpu().double(), want[0], rtol=3e-5, atol=3e-6, equal_nan=True)
    fused = ops.fuse_logits(x.to(dev), (x * 0.5).to(dev), method="contrastive", backend="cuda")
    torch.testing.assert_close(fused.cpu().double(), fuse_logits_reference(
        x.double(), (x * 0.5).double(), None, *preset_weights("contrastive", 0.1, 0.5, None)), rtol=1e-6, atol=1e-5,
        equal_nan=True)
    tok = ops.sample(x.to(dev), temperature=0.7, top_k=5, backend="cuda",
                     generator=torch.Generator(device=dev).manual_seed(0))
    assert tok.device == dev and tok[1].item() == 7
    draft = x.argmax(-1)[:, None].to(dev)
    acc, nxt = ops.verify(draft, torch.stack([x, x], 1).to(dev), temperature=0.0, backend="cuda")
    assert acc.tolist() == [1] * 5 and torch.equal(nxt.cpu(), x.argmax(-1))
    torch.cuda.synchronize(dev)
    assert torch.cuda.current_device() == before


def test_mixed_devices_are_a_clear_error():
    x = torch.randn(2, 10)
    with pytest.raises(ValueError, match="small is on cuda:0 but the other inputs are on cpu"):
        ops.fuse_logits(x, x.cuda(), method="contrastive")
    with pytest.raises(ValueError, match="draft_tokens is on cpu but the other inputs are on cuda:0"):
        ops.verify(torch.zeros(2, 1, dtype=torch.int64), torch.randn(2, 2, 10).cuda())
    with pytest.raises(ValueError, match="generator is on cpu but the logits are on cuda"):
        ops.sample(x.cuda(), generator=torch.Generator().manual_seed(0))
