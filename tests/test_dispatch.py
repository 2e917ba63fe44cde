"""Backend choice: explicit backends are strict, FSGEN_BACKEND is a preference, CPU never auto-picks
the Triton interpreter."""
import pytest
import torch

from fsgen_engine.config import parse_memory
from fsgen_engine.ops._dispatch import available_backends, choose_backend


def test_auto_on_cpu_never_picks_triton():
    b = choose_backend("op", torch.device("cpu"), "auto", native=None, triton_kernel=True)
    assert b == "reference"


def test_explicit_unavailable_backend_names_the_fix():
    with pytest.raises(ValueError, match="backend='cuda'.*CUDA tensors"):
        choose_backend("token_stats", torch.device("cpu"), "cuda", native="token_stats")


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend='gpu' is not a backend"):
        choose_backend("op", torch.device("cpu"), "gpu", native=None)


def test_env_preference_falls_back_when_op_lacks_backend(monkeypatch):
    monkeypatch.setenv("FSGEN_BACKEND", "cpu")
    # an op without a native kernel still runs (auto choice) when the preferred backend is missing
    assert choose_backend("op", torch.device("cpu"), None, native=None, triton_kernel=False) == "reference"


def test_env_backend_invalid(monkeypatch):
    monkeypatch.setenv("FSGEN_BACKEND", "fast")
    with pytest.raises(ValueError, match="FSGEN_BACKEND='fast'"):
        choose_backend("op", torch.device("cpu"), None, native=None)


def test_reference_always_available():
    assert available_backends(torch.device("cpu"), native=None, triton_kernel=False) == ["reference"]


@pytest.mark.parametrize("text,expected", [("2GiB", 2 * 2**30), ("512MB", 512 * 10**6), (1024, 1024), ("0.5", 0.5), (0.25, 0.25)])
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("bad", ["lots", "-1GB", 0, 1.5, "2 parsecs"])
def test_parse_memory_rejects(bad):
    with pytest.raises(ValueError, match="kv_memory"):
        parse_memory(bad)


def test_every_op_dispatches_through_the_registry():
    from fsgen_engine import ops
    from fsgen_engine.ops._dispatch import OPS

    names = {"token_stats", "fuse_logits", "sample", "verify", "store_kv", "paged_attention"}
    assert names <= set(OPS) and names <= set(ops.__all__)
    cpu = torch.device("cpu")
    for name in names:
        op = OPS[name]
        assert "reference" in op.impls, name
        # every backend the dispatcher may choose has an implementation
        usable = available_backends(cpu, native=op.native, triton_kernel=op.triton)
        assert op.backends(cpu) == usable, (name, op.backends(cpu), usable)


def test_op_runs_the_chosen_backend_with_its_name():
    from fsgen_engine.ops._dispatch import OPS, Op

    op = Op("_test_only_op", native=False, triton=False)
    try:
        @op.impl("reference")
        def _ref(backend, x, *, scale):
            return backend, x * scale

        assert op(torch.device("cpu"), "auto", 3, scale=2) == ("reference", 6)
        with pytest.raises(ValueError, match="backend='cpu' is not available"):
            op(torch.device("cpu"), "cpu", 3, scale=2)
    finally:
        del OPS["_test_only_op"]


@pytest.mark.parametrize("device", ["meta"])
def test_devices_without_data_are_refused_before_any_backend(device):
    with pytest.raises(ValueError, match="is on device 'meta'; the ops run on cpu or cuda tensors"):
        choose_backend("token_stats", torch.device(device), "auto", native="token_stats")
