"""ops.verify against the reference definition (fsgen_engine/reference/verify.py) on every backend
available here. Statistical tests use fixed seeds and a chi-square p-value threshold of 1e-4: a
correct kernel fails each of them with probability <= 1e-4 (reproducibly, the seeds being fixed)."""
import pytest
import torch
from scipy import stats

from fsgen_engine.ops.verify import verify
from fsgen_engine.reference.sample import filtered_probs
from tests.ops._backends import device_backends, generator

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
P_THRESHOLD = 1e-4
BACKENDS = device_backends("verify")


def greedy_expect(draft, logits, nd):
    arg = logits.float().argmax(-1)
    acc, nxt = [], []
    for b in range(draft.shape[0]):
        i = 0
        while i < nd[b] and arg[b, i] == draft[b, i]:
            i += 1
        acc.append(i)
        nxt.append(arg[b, i].item())
    return torch.tensor(acc), torch.tensor(nxt)


@pytest.mark.parametrize("device, backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_greedy_edge_cases(device, backend, dtype):
    b, k, v = 5, 4, 37
    logits = torch.randn(b, k + 1, v).to(dtype)
    arg = logits.float().argmax(-1)
    draft = arg[:, :k].clone()
    draft[1, 0] = (draft[1, 0] + 1) % v   # first rejected
    draft[2, 2] = (draft[2, 2] + 1) % v   # rejected in the middle
    draft[4, 3] = (draft[4, 3] + 1) % v   # rejected past row 4's ragged end
    nd = torch.tensor([4, 4, 4, 0, 2])    # row 0: all accepted -> bonus at K; row 3: no drafts
    for num_draft in (None, nd):
        n = torch.full((b,), k) if num_draft is None else num_draft
        acc, nxt = verify(draft.to(device), logits.to(device), backend=backend,
                          num_draft=None if num_draft is None else num_draft.to(device))
        acc, nxt = acc.cpu(), nxt.cpu()
        e_acc, e_nxt = greedy_expect(draft, logits, n)
        assert torch.equal(acc, e_acc) and torch.equal(nxt, e_nxt), (acc, nxt, e_acc, e_nxt)
    assert verify(draft.to(device), logits.to(device), num_draft=nd.to(device),
                  backend=backend)[0].tolist() == [4, 0, 2, 0, 2]


@pytest.mark.parametrize("device, backend", BACKENDS)
@pytest.mark.parametrize("params", [dict(temperature=0.0), dict(temperature=1.0), dict(temperature=0.5, top_k=5),
                                    dict(temperature=1.5, top_p=0.3, min_p=0.1)])
def test_pos_inf_target_logit_is_the_only_candidate(device, backend, params):
    # The target distribution at a position with a +inf logit is one-hot on its first +inf (as in
    # ops.sample): the draft is accepted iff it is that token, and a rejection or the bonus emits it.
    inf, nan = float("inf"), float("nan")
    b, k, v = 3, 3, 20
    logits = torch.randn(b, k + 1, v)
    draft = torch.tensor([[4, 2, 0], [1, 2, 3], [17, 0, 5]])
    logits[0, 0, 4] = inf                    # accepted
    logits[0, 1, [9, 15]] = inf              # draft 2 rejected -> first +inf, 9
    for i, tok in enumerate([1, 2, 3]):
        logits[1, i, tok] = inf              # every draft accepted
    logits[1, 3, :] = nan
    logits[1, 3, 6] = inf                    # bonus among NaN -> 6
    logits[2, 0, :] = nan
    logits[2, 0, 17] = inf                   # accepted among NaN
    logits[2, 1, :] = -inf                   # no valid token: one-hot on 0, draft 0 accepted
    logits[2, 2, 8] = inf                    # draft 5 rejected -> 8
    logits[2, 2, 9] = -inf
    q = torch.softmax(torch.randn(b, k, v), dim=-1)
    for seed in range(3):
        acc, nxt = verify(draft.to(device), logits.to(device), draft_probs=q.to(device),
                          generator=generator(device, seed), backend=backend, **params)
        assert acc.tolist() == [1, 3, 2] and nxt.tolist() == [9, 6, 8], (params, acc, nxt)


@pytest.mark.parametrize("device, backend", BACKENDS)
def test_zero_drafts_and_nan(device, backend):
    logits = torch.randn(2, 1, 11)
    logits[0, 0, ::2] = float("nan")  # NaN entries never win
    logits[1, 0] = float("nan")       # nothing valid -> token 0
    none = torch.empty(2, 0, dtype=torch.int64, device=device)
    acc, nxt = verify(none, logits.to(device), backend=backend)
    assert acc.tolist() == [0, 0]
    assert nxt[0].item() == torch.nan_to_num(logits[0, 0], nan=float("-inf")).argmax() and nxt[1] == 0
    q = torch.empty(2, 0, 11, device=device)
    for seed in range(3):
        _, nxt = verify(none, logits.to(device), draft_probs=q, temperature=1.0,
                        generator=generator(device, seed), backend=backend)
        assert nxt[0] % 2 == 1 and nxt[1] == 0


def first_token_dist(device, backend, row, q_row, seed, **filters):
    """Empirical distribution of the first emitted token over 4096 copies of one row, with the draft
    tokens drawn from q (the test may use multinomial; the kernels do not)."""
    n, (k1, v) = 4096, row.shape
    logits = row.repeat(n, 1, 1)
    q = q_row.repeat(n, 1, 1)
    draft = torch.multinomial(q_row, n, replacement=True, generator=generator("cpu", seed + 1000)).t().contiguous()
    acc, nxt = verify(draft.to(device), logits.to(device), draft_probs=q.to(device),
                      generator=generator(device, seed), backend=backend, **filters)
    acc, nxt = acc.cpu(), nxt.cpu()
    first = torch.where(acc > 0, draft[:, 0], nxt)
    assert ((acc >= 0) & (acc <= k1 - 1)).all()
    return torch.bincount(first, minlength=v).double(), n


@pytest.mark.parametrize("device, backend", BACKENDS)
def test_rejection_sampling_is_lossless(device, backend):
    torch.manual_seed(3)
    v, k = 8, 2
    row = torch.randn(k + 1, v)
    q_peak = torch.zeros(k, v)
    q_peak[:, 0] = 1.0  # draft always proposes token 0 with certainty: very different from p
    q_soft = torch.softmax(torch.randn(k, v) * 2, -1)
    cases = [(q_peak, dict(temperature=1.0)), (q_soft, dict(temperature=0.8, top_k=5))]
    cases += [(q_soft, dict(temperature=1.3, top_k=6, top_p=0.9, min_p=0.05)), (q_peak, dict(temperature=1.0, top_p=0.7))]
    for i, (q, filt) in enumerate(cases):
        full = dict(top_k=0, top_p=1.0, min_p=0.0) | filt
        p = filtered_probs(row[:1], *(torch.tensor([full[n]]) for n in ("temperature", "top_k", "top_p", "min_p")))[0]
        counts, n = first_token_dist(device, backend, row, q, 50 + i, **filt)
        support = p > 0
        assert counts[~support].sum() == 0
        pval = stats.chisquare(counts[support].numpy(), (p[support] * n).numpy()).pvalue
        assert pval > P_THRESHOLD, (i, counts, p * n, pval)


@pytest.mark.parametrize("device, backend", BACKENDS)
def test_mixed_greedy_and_sampled_rows_deterministic(device, backend):
    b, k, v = 6, 3, 20
    logits = torch.randn(b, k + 1, v)
    q = torch.softmax(torch.randn(b, k, v), -1)
    draft = torch.randint(0, v, (b, k))
    draft[0] = logits[0, :k].argmax(-1)
    t = torch.tensor([0.0, 1.0, 0.0, 0.7, 0.0, 1.0])
    d = lambda x: x.to(device)  # noqa: E731
    a1 = verify(d(draft), d(logits), draft_probs=d(q), temperature=d(t), generator=generator(device, 5), backend=backend)
    a2 = verify(d(draft), d(logits), draft_probs=d(q), temperature=d(t), generator=generator(device, 5), backend=backend)
    a1, a2 = tuple(x.cpu() for x in a1), tuple(x.cpu() for x in a2)
    assert torch.equal(a1[0], a2[0]) and torch.equal(a1[1], a2[1])
    g_acc, g_nxt = greedy_expect(draft, logits, torch.full((b,), k))
    greedy = t == 0
    assert torch.equal(a1[0][greedy], g_acc[greedy]) and torch.equal(a1[1][greedy], g_nxt[greedy])
    assert ((a1[1] >= 0) & (a1[1] < v)).all()


def test_errors():
    d = torch.zeros(2, 3, dtype=torch.int64)
    x = torch.randn(2, 4, 10)
    with pytest.raises(ValueError, match=r"target_logits must be \[B, K\+1, V\] = \[2, 4, V\]"):
        verify(d, torch.randn(2, 3, 10))
    with pytest.raises(TypeError, match="draft_tokens has dtype int32"):
        verify(d.int(), x)
    with pytest.raises(ValueError, match="draft_probs=None but temperature > 0"):
        verify(d, x, temperature=1.0)
    with pytest.raises(ValueError, match=r"draft_probs has shape \(2, 3, 9\)"):
        verify(d, x, draft_probs=torch.rand(2, 3, 9), temperature=1.0)
    with pytest.raises(ValueError, match=r"num_draft=4 is out of range \[0, K=3\]"):
        verify(d, x, num_draft=torch.tensor([1, 4]))
    with pytest.raises(ValueError, match="draft_tokens contains 10"):
        verify(torch.tensor([[0, 10, 0], [0, 0, 0]]), x)
    # a bad token past the ragged end is ignored
    verify(torch.tensor([[0, 10, 0], [0, 0, 0]]), x, num_draft=torch.tensor([1, 3]))
    with pytest.raises(ValueError, match="top_p=0.0"):
        verify(d, x, top_p=0.0)
    # hot path: no value checks, out-of-range values are clamped/rejected, never out-of-range tokens
    acc, nxt = verify(torch.tensor([[0, 99, 0], [0, 0, 0]]), x, num_draft=torch.tensor([7, -1]), _validated=True)
    assert acc.tolist()[1] == 0 and acc[0] <= 1 and ((nxt >= 0) & (nxt < 10)).all()


def _split_devices():
    from fsgen_engine.ops._dispatch import available_backends as avail
    from tests.conftest import DEVICES as devs
    return [d for d in devs if "triton" in avail(torch.device(d), native=None, triton_kernel=True)]


def _split_verify(draft, logits, q, nd, t, k, p, m, seed, ch):
    from fsgen_engine.kernels.sample_split import verify_split_triton
    from fsgen_engine.ops.sample import draw_seed

    b = logits.shape[0]
    dev = logits.device
    full = lambda v, dt: (v if isinstance(v, torch.Tensor) else torch.full((b,), v, dtype=dt)).to(dev)  # noqa: E731
    acc = torch.full((b,), -7, dtype=torch.int64, device=dev)
    nxt = torch.full((b,), -7, dtype=torch.int64, device=dev)
    verify_split_triton(draft.to(dev), logits, None if q is None else q.to(dev), nd.to(dev), full(t, torch.float32),
                        full(k, torch.int64), full(p, torch.float32), full(m, torch.float32),
                        draw_seed(generator(dev.type, seed), dev), acc, nxt, ch=ch,
                        kc=8 if dev.type == "cpu" else None)
    return acc.cpu(), nxt.cpu()


@pytest.mark.parametrize("device", _split_devices())
def test_split_row_verify_greedy(device):
    """kernels/sample_split.py's verifier (the GPU path): greedy rows over ragged column splits."""
    b, k, v = 5, 3, 300 if device == "cpu" else 151936
    ch = 128 if device == "cpu" else 4096   # CPU: 3 splits
    logits = torch.randn(b, k + 1, v)
    logits[3, 1, ::3] = float("nan")
    arg = logits.float().argmax(-1)
    arg[3, 1] = torch.nan_to_num(logits[3, 1], nan=float("-inf")).argmax()
    draft = arg[:, :k].clone()
    draft[1, 0] = (draft[1, 0] + 1) % v
    draft[2, 2] = (draft[2, 2] + 1) % v
    nd = torch.tensor([3, 3, 3, 0, 2])
    acc, nxt = _split_verify(draft, logits.to(device), None, nd, 0.0, 0, 1.0, 0.0, 0, ch)
    e_acc, e_nxt = greedy_expect(draft, torch.nan_to_num(logits, nan=float("-inf")), nd)
    assert torch.equal(acc, e_acc) and torch.equal(nxt, e_nxt), (acc, nxt, e_acc, e_nxt)


@pytest.mark.parametrize("device", _split_devices())
def test_split_row_verify_is_lossless(device):
    """First emitted token ~ the target's filtered distribution (chi-square, p > 1e-4: a correct
    verifier fails each case with probability 1e-4), through the candidate path (top-k / top-p) and
    the full-row fallback (no filter)."""
    n = 300 if device == "cpu" else 4096
    v = 60 if device == "cpu" else 5000
    ch = 32 if device == "cpu" else 4096
    torch.manual_seed(4)
    row = torch.full((2, v), float("-inf"))
    row[:, :8] = torch.randn(2, 8)
    row[:, v - 2:] = torch.randn(2, 2)              # in the second split
    q_row = torch.zeros(1, v)
    q_row[0, :10] = torch.softmax(torch.randn(10) * 2, -1)
    cols = torch.nonzero(row[0] > float("-inf")).flatten()
    for i, filt in enumerate([dict(t=1.0, k=5, p=1.0, m=0.0), dict(t=0.8, k=0, p=0.9, m=0.0),
                              dict(t=1.2, k=0, p=1.0, m=0.0)]):
        p = filtered_probs(row[:1], torch.tensor([filt["t"]]), torch.tensor([filt["k"]]), torch.tensor([filt["p"]]),
                           torch.tensor([filt["m"]]))[0]
        draft = torch.multinomial(q_row[0], n, replacement=True, generator=generator("cpu", 7 + i))[:, None]
        acc, nxt = _split_verify(draft, row.repeat(n, 1, 1).to(device), q_row.repeat(n, 1, 1), torch.ones(n, dtype=torch.int64),
                                 filt["t"], filt["k"], filt["p"], filt["m"], 60 + i, ch)
        first = torch.where(acc > 0, draft[:, 0], nxt)
        counts = torch.bincount(first, minlength=v).double()
        assert counts[p == 0].sum() == 0, (filt, first.unique())
        sup = p[cols] > 0
        pval = stats.chisquare(counts[cols][sup].numpy(), (p[cols][sup] * n).numpy()).pvalue
        assert pval > P_THRESHOLD, (filt, pval)
