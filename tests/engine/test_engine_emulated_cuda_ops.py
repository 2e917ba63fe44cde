"""The engine with its logit ops on the CUDA kernels, without a GPU: token_stats, fuse_logits, sample
and verify run csrc/cuda under the SIMT emulator (tests/_simt.py) while the models run on the CPU.

This is the path a GPU engine takes through those kernels (the strides it passes, the sampling
parameters it builds once per call, ``all_greedy`` on greedy verification, one block per row and
split rows), checked end to end: greedy speculative output equals the large model's, and the routed
and fused methods give what the same engine gives on the CPU kernels (the toy models' sharp
distributions keep rounding differences away from every argmax).
"""
import pytest

from toy import make_hf

from fsgen_engine import MethodOptions, SamplingParams
from fsgen_engine.generate_args import generate_kwargs
from fsgen_engine.ops import _dispatch
from fsgen_engine.ops._native import use_cuda_emulator
from tests._simt import build_cuda_emulator

pytestmark = pytest.mark.xdist_group("simt")
PROMPTS = [[1, 5, 6, 7], [1, 9, 10, 11, 12, 13, 14, 15, 16], [1, 20]]
N = 10


@pytest.fixture(scope="module")
def engines():
    from fsgen_engine.engine import Engine

    large = make_hf("llama", 3, 0, hidden=64)
    other = make_hf("qwen2", 2, 7, hidden=64)
    small_ft = make_hf("qwen2", 2, 8, hidden=64)
    kw = dict(device="cpu", dtype="float32", kv_memory="16MiB", page_size=4, max_batch=4)
    return Engine(large, other, **kw), Engine(large, other, small_ft, **kw)


@pytest.fixture(params=["off", "3"], ids=lambda s: f"split={s}")
def cuda_ops(request, monkeypatch):
    """Within the test, every op that has a CUDA kernel runs it (emulated) on the CPU tensors."""
    monkeypatch.setenv("FSGEN_SPLIT_ROWS", request.param)
    choose = _dispatch.choose_backend

    def prefer_cuda(op, device, backend, *, native, triton_kernel=True):
        if backend in (None, "auto") and "cuda" in _dispatch.available_backends(device, native=native,
                                                                                  triton_kernel=triton_kernel):
            return "cuda"
        return choose(op, device, backend, native=native, triton_kernel=triton_kernel)

    with use_cuda_emulator(build_cuda_emulator()):
        monkeypatch.setattr(_dispatch, "choose_backend", prefer_cuda)
        calls = []
        real = _dispatch.Op.run

        def counted(self, which, *args, **kwargs):
            calls.append((self.name, which))
            return real(self, which, *args, **kwargs)

        monkeypatch.setattr(_dispatch.Op, "run", counted)
        yield calls


def gen(eng, method, **kw):
    return [o.token_ids for o in eng.generate(PROMPTS, method=method, max_new_tokens=N, ignore_eos=True,
                                              progress=False, **generate_kwargs(**kw))]


def test_speculative_greedy_equals_large(engines, cuda_ops):
    eng, _ = engines
    large = gen(eng, "large")
    for k, adaptive in ((1, False), (4, False), (3, True)):
        assert gen(eng, "speculative", num_draft_tokens=k, adaptive_draft=adaptive) == large, (k, adaptive)
    assert ("verify", "cuda") in cuda_ops


def test_routed_and_fused_methods_equal_the_cpu_kernels(engines, cuda_ops):
    eng, eng_ft = engines
    cases = [(eng, "oracle", dict(router="max_prob:0.5")), (eng, "oracle", dict(router="entropy:1.0")),
             (eng, "contrastive", dict(router="always")), (eng, "bild", {}),
             (eng, "speculative", dict(num_draft_tokens=2, target="contrastive")),
             (eng_ft, "proxy", dict(router="always"))]
    emulated = [gen(e, m, **kw) for e, m, kw in cases]
    assert {("token_stats", "cuda"), ("fuse_logits", "cuda"), ("verify", "cuda")} <= set(cuda_ops)
    cuda_ops.clear()
    with use_cuda_emulator(None):
        cpu = [gen(e, m, **kw) for e, m, kw in cases]
    assert ("token_stats", "cpu") in cuda_ops
    for (_, m, kw), a, b in zip(cases, emulated, cpu):
        assert a == b, (m, kw)


@pytest.mark.parametrize("method", ["large", "speculative"])
def test_sampled_generation_is_reproducible(engines, cuda_ops, method):
    """Sampling with a seed (ops.sample for `large`, ops.verify's rejection sampling for speculative)
    gives the same tokens twice, all in the vocabulary."""
    eng, _ = engines
    params = SamplingParams(temperature=0.9, top_k=20, top_p=0.95, seed=11)

    def run():
        return [o.token_ids for o in eng.generate(PROMPTS, params, method=method,
                                                  options=MethodOptions(num_draft_tokens=3), max_new_tokens=N,
                                                  ignore_eos=True, progress=False)]
    first = run()
    assert run() == first
    assert all(len(t) == N and all(0 <= x < 256 for x in t) for t in first)
    assert ("sample" if method == "large" else "verify", "cuda") in cuda_ops
