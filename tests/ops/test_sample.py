"""ops.sample against the reference definition (fsgen_engine/reference/sample.py) on every backend
available here. Statistical tests use fixed seeds and a chi-square p-value threshold of 1e-4: a
correct kernel fails each of them with probability <= 1e-4 (and, seeds being fixed, reproducibly)."""
import pytest
import torch
from scipy import stats

from fsgen_engine.ops.sample import SamplingTensors, sample
from fsgen_engine.reference.sample import filtered_probs
from tests.ops._backends import device_backends, generator

# The Triton interpreter evaluates masked lanes too (-inf - -inf): harmless numpy warnings.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
P_THRESHOLD = 1e-4  # per statistical assertion: the false-failure rate
BACKENDS = device_backends("sample")
FAST = device_backends("sample", exclude_interpreted=True)  # backends cheap enough for large V


def allowed(logits, t, k, p, m):
    b = logits.shape[0]
    as_t = lambda v, dt: v if isinstance(v, torch.Tensor) else torch.full((b,), v, dtype=dt)  # noqa: E731
    return filtered_probs(logits, as_t(t, torch.float32), as_t(k, torch.int64), as_t(p, torch.float32),
                          as_t(m, torch.float32)) > 0


@pytest.mark.parametrize("device, backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_greedy_is_argmax_lowest_index(device, backend, dtype):
    for b, v in [(1, 7), (3, 1000)]:
        logits = torch.randint(-3, 3, (b, v)).to(dtype)  # many ties
        logits[0, 2] = float("-inf")
        out = sample(logits.to(device), temperature=0.0, backend=backend)
        assert out.dtype == torch.int64 and out.device == logits.to(device).device
        assert torch.equal(out.cpu(), logits.float().argmax(dim=-1))


@pytest.mark.parametrize("device, backend", BACKENDS)
def test_filters_mixed_rows_stay_in_allowed_set(device, backend):
    b, v = (32, 1000) if backend == "triton" else (64, 1000)
    logits = torch.randn(b, v) * 3
    logits[::5, :100] = float("-inf")
    g = torch.Generator().manual_seed(1)
    t = torch.tensor([0.0, 0.5, 1.0, 2.0])[torch.randint(0, 4, (b,), generator=g)]
    k = torch.tensor([0, 1, 5, 50])[torch.randint(0, 4, (b,), generator=g)]
    p = torch.tensor([1.0, 0.5, 0.9])[torch.randint(0, 3, (b,), generator=g)]
    m = torch.tensor([0.0, 0.1])[torch.randint(0, 2, (b,), generator=g)]
    ok = allowed(logits, t, k, p, m)
    d = lambda x: x.to(device)  # noqa: E731
    for seed in range(2):
        out = sample(d(logits), temperature=d(t), top_k=d(k), top_p=d(p), min_p=d(m),
                     generator=generator(device, seed), backend=backend).cpu()
        assert ok[torch.arange(b), out].all()


@pytest.mark.parametrize("device, backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_filters(device, backend, dtype):
    logits = (torch.randn(3, 1000) * 3).to(dtype)
    ok = allowed(logits, 0.8, 20, 0.8, 0.05)
    out = sample(logits.to(device), temperature=0.8, top_k=20, top_p=0.8, min_p=0.05,
                 generator=generator(device), backend=backend).cpu()
    assert ok[torch.arange(3), out].all()


@pytest.mark.parametrize("device, backend", FAST)
@pytest.mark.parametrize("v", [7, 32000, 151936])
def test_large_and_odd_vocab(device, backend, v):
    if v == 151936 and backend == "reference":
        pytest.skip("largest vocabulary only on the kernels (the float64 reference is slow there)")
    logits = torch.randn(3, v) * 2
    ok = allowed(logits, 1.0, 40, 0.9, 0.0)
    out = sample(logits.to(device), top_k=40, top_p=0.9, generator=generator(device), backend=backend).cpu()
    assert ok[torch.arange(3), out].all()
    assert torch.equal(sample(logits.to(device), temperature=0, backend=backend).cpu(), logits.argmax(-1))


@pytest.mark.parametrize("device, backend", BACKENDS)
def test_non_contiguous_rows_and_batch_1(device, backend):
    big = torch.randn(4, 64)
    logits = big[::2, 3:40]  # row stride 128, unit stride along V
    assert not logits.is_contiguous()
    dev_logits = big.to(device)[::2, 3:40]
    assert torch.equal(sample(dev_logits, temperature=0, backend=backend).cpu(), logits.argmax(-1))
    ok = allowed(logits, 1.0, 3, 1.0, 0.0)
    out = sample(dev_logits, top_k=3, generator=generator(device), backend=backend).cpu()
    assert ok[torch.arange(2), out].all()
    one = sample(big[:1].to(device), top_k=1, generator=generator(device), backend=backend)
    assert one.shape == (1,) and one.item() == big[0].argmax().item()


@pytest.mark.parametrize("device, backend", BACKENDS)
def test_deterministic_for_a_seed(device, backend):
    logits = torch.zeros(8, 50, device=device)  # uniform: different seeds almost surely differ
    a = sample(logits, generator=generator(device, 7), backend=backend)
    b = sample(logits, generator=generator(device, 7), backend=backend)
    c = sample(logits, generator=generator(device, 8), backend=backend)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("device, backend", BACKENDS)
def test_distribution_matches_filtered_softmax(device, backend):
    row = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, float("-inf")])
    configs = [dict(temperature=1.0), dict(temperature=1.5, top_k=6, top_p=0.9, min_p=0.1)]
    configs += [dict(temperature=0.7, top_k=4), dict(top_p=0.8), dict(temperature=2.0, min_p=0.3)]
    n = 4096
    logits = row.repeat(n, 1).to(device)
    for i, cfg in enumerate(configs):
        full = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0) | cfg
        probs = filtered_probs(row[None], *(torch.tensor([full[k]]) for k in ("temperature", "top_k", "top_p",
                                                                                 "min_p")))[0]
        out = sample(logits, generator=generator(device, 100 + i), backend=backend, **cfg).cpu()
        counts = torch.bincount(out, minlength=8).double()
        support = probs > 0
        assert counts[~support].sum() == 0, (cfg, counts, probs)
        if support.sum() > 1:
            pval = stats.chisquare(counts[support].numpy(), (probs[support] * n).numpy()).pvalue
            assert pval > P_THRESHOLD, (cfg, counts, probs * n, pval)


@pytest.mark.parametrize("device, backend", BACKENDS)
def test_nan_and_all_masked_rows(device, backend):
    logits = torch.randn(3, 9)
    logits[0, ::2] = float("nan")            # NaN entries are never sampled
    logits[1] = float("-inf")                 # no valid token -> token 0
    logits[2] = float("nan")
    for t in (0.0, 1.0):
        for seed in range(3):
            out = sample(logits.to(device), temperature=t, top_p=0.95, generator=generator(device, seed),
                         backend=backend).cpu()
            assert out[0] % 2 == 1 and out[1] == 0 and out[2] == 0


def _special_rows(dtype):
    """Rows with +inf logits next to NaN and -inf rows; expected token per row for any parameters."""
    inf, nan = float("inf"), float("nan")
    logits = torch.randn(6, 40).to(dtype)
    logits[0, 7] = inf                      # one +inf: it is the token
    logits[1, 3] = inf                      # several +inf: the first one wins
    logits[1, 30] = inf
    logits[2, :5] = nan                     # NaN before the +inf is never sampled
    logits[2, 11] = inf
    logits[2, 12] = -inf
    logits[3] = -inf                        # +inf among -inf
    logits[3, 39] = inf
    logits[4] = -inf                        # no valid token: token 0
    logits[5] = nan                         # no valid token: token 0
    return logits, torch.tensor([7, 3, 11, 39, 0, 0])


@pytest.mark.parametrize("device, backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("params", [dict(temperature=0.0), dict(temperature=1.0), dict(temperature=0.5, top_k=5),
                                    dict(temperature=2.0, top_p=0.3), dict(temperature=1.0, min_p=0.2),
                                    dict(temperature=0.7, top_k=2, top_p=0.5, min_p=0.5)])
def test_pos_inf_logit_is_the_only_candidate(device, backend, dtype, params):
    logits, expected = _special_rows(dtype)
    for seed in range(3):
        out = sample(logits.to(device), generator=generator(device, seed), backend=backend, **params)
        assert torch.equal(out.cpu(), expected), (params, out)
    # the reference definition says so too: a one-hot distribution on the first +inf
    b = logits.shape[0]
    probs = filtered_probs(logits, torch.full((b,), params["temperature"]),
                           torch.full((b,), params.get("top_k", 0)), torch.full((b,), params.get("top_p", 1.0)),
                           torch.full((b,), params.get("min_p", 0.0)))
    assert torch.equal(probs.argmax(dim=-1), expected) and torch.equal(probs.max(dim=-1).values, torch.ones(b,
                                                                                               dtype=torch.float64))


def test_params_fast_path_matches():
    logits = torch.randn(4, 100)
    params = SamplingTensors.prepare(4, "cpu", temperature=torch.tensor([0.0, 0.5, 1.0, 1.0]), top_k=5,
                                     top_p=torch.tensor([1.0, 0.9, 0.8, 1.0]), min_p=0.0)
    a = sample(logits, params=params, generator=generator('cpu', 3))
    b = sample(logits, temperature=params.temperature, top_k=5, top_p=params.top_p, generator=generator('cpu', 3))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="params.temperature"):
        sample(logits[:2], params=params)


@pytest.mark.parametrize("kwargs, match", [
    (dict(temperature=-1.0), r"temperature=-1.0 .*\[0"),
    (dict(temperature=float("nan")), "temperature=nan"),
    (dict(temperature=torch.tensor([1.0, -2.0])), "temperature=-2.0"),
    (dict(top_k=-1), "top_k=-1"),
    (dict(top_k=1.5), "top_k=1.5 must be an integer"),
    (dict(top_p=0.0), r"top_p=0.0 .*\(0"),
    (dict(top_p=1.5), "top_p=1.5"),
    (dict(min_p=1.5), "min_p=1.5"),
    (dict(top_p=torch.ones(3)), r"top_p must be a scalar or a \[B\]=2"),
    (dict(backend="gpu"), "backend='gpu' is not a backend"),
])
def test_validation_errors(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        sample(torch.randn(2, 10), **kwargs)


def test_tensor_errors():
    with pytest.raises(ValueError, match="logits must be 2-D"):
        sample(torch.randn(10))
    with pytest.raises(TypeError, match="dtype int64"):
        sample(torch.ones(2, 10, dtype=torch.int64))
    with pytest.raises(ValueError, match="stride 1 along its last dimension"):
        sample(torch.randn(10, 2).t())
    with pytest.raises(ValueError, match="empty vocabulary"):
        sample(torch.randn(2, 0))


def _split_devices():
    from fsgen_engine.ops._dispatch import available_backends as avail
    from tests.conftest import DEVICES as devs
    return [d for d in devs if "triton" in avail(torch.device(d), native=None, triton_kernel=True)]


def _split_sample(logits, t, k, p, m, seed, ch):
    from fsgen_engine.kernels.sample_split import sample_split_triton
    from fsgen_engine.ops.sample import draw_seed

    b = logits.shape[0]
    dev = logits.device
    full = lambda v, dt: (v if isinstance(v, torch.Tensor) else torch.full((b,), v, dtype=dt)).to(dev)  # noqa: E731
    out = torch.full((b,), -7, dtype=torch.int64, device=dev)
    sample_split_triton(logits, full(t, torch.float32), full(k, torch.int64), full(p, torch.float32),
                        full(m, torch.float32), draw_seed(generator(dev.type, seed), dev), out, ch=ch,
                        kc=8 if dev.type == "cpu" else None)
    return out.cpu()


@pytest.mark.parametrize("device", _split_devices())
def test_split_row_sampler_filters_and_special_rows(device):
    """kernels/sample_split.py (the GPU sampler at every batch size): mixed filters, rows that need the
    full-pass fallback (flat rows under top-p / min-p, ties at the top-k boundary, top_k > KC), greedy,
    NaN / -inf rows, across ragged column splits."""
    b, v = 24, 1000
    ch = 256 if device == "cpu" else 4096   # CPU: 4 splits, 8 candidates each (kc=8)
    logits = torch.randn(b, v) * 3
    logits[0] = 0.0                                   # flat: top-p and min-p keep everything -> fallback
    logits[1, :500] = 1.0                             # 500-way tie at the top-k boundary -> fallback
    logits[2, ::2] = float("nan")                     # NaN never sampled
    logits[3] = float("-inf")                         # no valid token -> 0
    logits[4, 700:] = float("-inf")
    t = torch.tensor([1.0, 0.7, 1.0, 1.0, 0.0, 1.3] * 4)
    k = torch.tensor([0, 5, 0, 40, 0, 200] * 4)       # 200 > KC = 64: full pass
    p = torch.tensor([0.9, 1.0, 0.8, 0.95, 1.0, 1.0, 0.5, 1.0] * 3)
    m = torch.tensor([0.0, 0.0, 0.05, 0.0] * 6)
    ok = allowed(logits, t, k, p, m)
    for seed in range(3):
        out = _split_sample(logits.to(device), t, k, p, m, seed, ch)
        assert ok[torch.arange(b), out].all(), (seed, out)
        assert out[3] == 0 and out[2] % 2 == 1
        assert out[4] == logits[4].argmax()


@pytest.mark.parametrize("device", _split_devices())
def test_split_row_sampler_distribution(device):
    """Chi-square (p > 1e-4 per config: a correct sampler fails each with probability 1e-4) over rows
    longer than one split, for the candidate path, the no-filter race and the fallback."""
    # the interpreter runs programs one by one: on the CPU, 2 splits of 32 columns, 8 candidates each
    ch = 32 if device == "cpu" else 4096
    v = 60 if device == "cpu" else 9000
    row = torch.full((v,), float("-inf"))
    row[:8] = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -1.5])
    row[v - 3:] = torch.tensor([1.2, 0.3, 1.9])        # candidates in the last split too
    n = 300 if device == "cpu" else 4096
    logits = row.repeat(n, 1).to(device)
    support_cols = torch.nonzero(row > float("-inf")).flatten()
    configs = [dict(t=1.0, k=0, p=1.0, m=0.0), dict(t=1.5, k=0, p=0.9, m=0.0), dict(t=1.2, k=8, p=0.85, m=0.05)]
    if device != "cpu":   # the interpreter is slow: the CPU keeps one config per path
        configs += [dict(t=0.8, k=6, p=1.0, m=0.0), dict(t=1.0, k=0, p=1.0, m=0.2)]
    for i, c in enumerate(configs):
        probs = filtered_probs(row[None], torch.tensor([c["t"]]), torch.tensor([c["k"]]), torch.tensor([c["p"]]),
                               torch.tensor([c["m"]]))[0]
        out = _split_sample(logits, c["t"], c["k"], c["p"], c["m"], 50 + i, ch)
        counts = torch.bincount(out, minlength=v).double()
        assert counts[probs == 0].sum() == 0, (c, out.unique())
        sup = probs[support_cols] > 0
        pval = stats.chisquare(counts[support_cols][sup].numpy(), (probs[support_cols][sup] * n).numpy()).pvalue
        assert pval > P_THRESHOLD, (c, pval)
