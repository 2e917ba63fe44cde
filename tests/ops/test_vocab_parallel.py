"""ops.vocab_parallel: per-shard partials merged across ranks against the unsharded ops.

No torch.distributed here: the tests cut a full logits tensor into contiguous vocabulary shards
themselves (ceil-div blocks as a vocab-parallel LM head lays them out, last one shorter, plus
arbitrary uneven cuts) and stack the partials as an all-gather would.
"""
import math
import random

import pytest
import torch

from fsgen_engine import ops
from fsgen_engine.ops._dispatch import available_backends
from fsgen_engine.ops.vocab_parallel import PARTIAL_WIDTH
from fsgen_engine.reference.sample import clean_logits
from fsgen_engine.reference.token_stats import token_stats_reference

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
RANKS = [1, 2, 3, 4]
# Tolerance against the float64 reference of the (rounded) full rows: the same as tests/ops/
# test_token_stats.py, because the merged stats carry only the shard kernels' float32 accumulation
# (over V_r <= V terms, so no more than the unsharded kernel) plus a float64 merge. The one derived
# quantity, top2 = top1 + log(1 - margin / max_prob), cancels when top2 << top1, but its error is
# absolute in exp(top2 - top1) (~1e-7), i.e. <= 1e-7 * max_prob in the margin, inside atol. Measured
# worst cases over V up to 151936, R = 1..4, logit scales 1-12: 1.9e-6 absolute in logsumexp (values
# ~50, relative 1e-7), < 8e-7 absolute elsewhere. Against the unsharded kernel both sides carry that
# error, hence twice the tolerance.
TOL = {torch.float32: (2e-5, 2e-6), torch.float16: (3e-5, 3e-6), torch.bfloat16: (3e-5, 3e-6)}
STAT_FIELDS = ("entropy", "max_prob", "margin", "logsumexp")
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


def ceil_div_shards(V, R):
    """[(start, stop)] of a ceil-div split; empty trailing shards dropped (every shard >= 1 column)."""
    c = -(-V // R)
    return [(o, min(V, o + c)) for o in range(0, V, c)]


def random_shards(V, R, seed):
    cuts = sorted(random.Random(seed).sample(range(1, V), R - 1)) if R > 1 else []
    bounds = [0] + cuts + [V]
    return list(zip(bounds[:-1], bounds[1:]))


def merged_stats(x, shards, backend="auto", shuffle=False):
    parts = [ops.token_stats_partial(x[:, a:b], a, backend=backend) for a, b in shards]
    for p in parts:
        assert p.shape == (x.shape[0], PARTIAL_WIDTH) and p.dtype == torch.float64 and p.is_contiguous()
    if shuffle:  # the all-gather order must not matter
        random.Random(0).shuffle(parts)
    return ops.merge_token_stats(torch.stack(parts))


def check(got, x, full, ref=None):
    """``got`` (merged) against the float64 reference ``ref`` (computed when None) and the unsharded
    op ``full`` on ``x``."""
    ref = token_stats_reference(x.double()) if ref is None else ref
    rtol, atol = TOL[x.dtype]
    assert got.argmax.dtype == torch.int64
    assert torch.equal(got.argmax.cpu(), ref[3].cpu()), (got.argmax, ref[3])
    assert torch.equal(got.argmax, full.argmax)
    for name in STAT_FIELDS:
        g = getattr(got, name)
        assert g.dtype == torch.float32 and g.shape == (x.shape[0],), name
        want = ref[got._fields.index(name)]
        torch.testing.assert_close(g.cpu().double(), want.cpu(), rtol=rtol, atol=atol, equal_nan=True,
                                   msg=lambda m, n=name: f"{n} vs float64 reference: {m}")
        torch.testing.assert_close(g, getattr(full, name), rtol=2 * rtol, atol=2 * atol, equal_nan=True,
                                   msg=lambda m, n=name: f"{n} vs unsharded op: {m}")


def backends(device, V):
    out = available_backends(torch.device(device), native="token_stats", triton_kernel=True)
    # the Triton interpreter and the torch reference only get small vocabularies (time, not coverage:
    # test_token_stats.py checks every backend against the reference at large V)
    return [b for b in out if not ((b == "triton" and device == "cpu" and V > 101) or
                                   (b == "reference" and V > 5000))]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("V", [7, 101, 4500, 49157])
@pytest.mark.parametrize("R", RANKS)
def test_token_stats_matches_unsharded(device, V, R, dtype):
    torch.manual_seed(V * 10 + R)
    for scale in (1.0, 4.0, 12.0):
        x = (torch.randn(5, V) * scale).to(dtype).to(device)
        ref = token_stats_reference(x.double())
        for backend in backends(device, V):
            if backend == "triton" and device == "cpu" and scale != 4.0:
                continue  # interpreted: one scale is enough
            full = ops.token_stats(x, backend=backend)
            check(merged_stats(x, ceil_div_shards(V, R), backend), x, full, ref)
            if R > 1:
                check(merged_stats(x, random_shards(V, R, V + R), backend, shuffle=True), x, full, ref)


@pytest.mark.parametrize("R", [2, 3, 4])
def test_large_logits_keep_precision(R):
    # logsumexp ~ 1000: the partial's float64 top1 - log(max_prob) does not inherit the float32
    # rounding of a large logsumexp (ulp 6e-5 at 1000) into max_prob
    x = torch.randn(4, 4501) * 3 + 1000.0
    check(merged_stats(x, ceil_div_shards(4501, R)), x, ops.token_stats(x))


def special_rows(V, cut):
    """Rows whose special entries fall on either side of the shard boundary ``cut`` (0 < cut < V-3)."""
    x = torch.randn(14, V) * 4
    x[0, 1::3] = -math.inf                           # -inf tokens in a finite row
    x[1, :] = -math.inf                              # all -inf
    x[2, cut + 1] = math.nan                         # NaN in a later shard only
    x[3, [1, cut + 1]] = math.nan                    # NaN in two shards: the first wins
    x[4, cut + 2] = math.inf                         # +inf in a later shard
    x[5, [cut, V - 1]] = math.inf                    # +inf in two shards: the first wins
    x[6, 0] = math.inf                               # +inf early, NaN later: NaN wins
    x[6, V - 1] = math.nan
    x[7, :] = 1.5                                    # uniform: argmax 0, margin 0, entropy log V
    x[8, :] = -math.inf                              # single finite token in the last shard
    x[8, V - 1] = 0.0
    x[9, :cut] = -math.inf                           # first shard all -inf, the rest finite
    x[10, cut:] = -math.inf                          # later shards all -inf
    x[11, 0] = math.nan                              # NaN at 0, -inf elsewhere
    x[11, 1:] = -math.inf
    x[12, :] = -math.inf                             # all -inf but one NaN in the last shard
    x[12, V - 1] = math.nan
    x[13, [cut - 1, cut]] = 50.0                     # equal maxima either side of the boundary
    return x


def sharded_special_rows(V, R, dtype, device):
    """R ceil-div shards of V columns, the first shard boundary, and special_rows cut there."""
    shards = ceil_div_shards(V, R)
    cut = shards[1][0] if len(shards) > 1 else V // 2
    return shards, cut, special_rows(V, cut).to(dtype).to(device)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("V", [7, 1000, 4501])
@pytest.mark.parametrize("R", RANKS)
def test_special_rows(device, V, R, dtype):
    shards, cut, x = sharded_special_rows(V, R, dtype, device)
    for backend in backends(device, V):
        s = merged_stats(x, shards, backend)
        check(s, x, ops.token_stats(x, backend=backend))
        assert s.argmax[1:9].tolist() == [0, cut + 1, 1, cut + 2, cut, V - 1, 0, V - 1]
        assert s.argmax[11:].tolist() == [0, V - 1, cut - 1]
        for row in (2, 3, 6, 11, 12):
            assert all(math.isnan(getattr(s, n)[row].item()) for n in STAT_FIELDS), row
        assert s.logsumexp[1].item() == -math.inf and math.isnan(s.entropy[1].item())
        assert s.logsumexp[4].item() == math.inf and math.isnan(s.margin[4].item())
        assert s.margin[7].item() == 0.0 and abs(s.entropy[7].item() - math.log(V)) < 1e-4
        assert s.max_prob[8].item() == 1.0 and s.entropy[8].item() == 0.0
        assert s.margin[13].item() == 0.0


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_ties_across_shards_lowest_global_index(dtype):
    V, R = 4503, 3                                   # shards [0, 1501), [1501, 3002), [3002, 4503)
    x = torch.randn(5, V)
    x[0, [4000, 2000]] = 10.0                        # shards 2 and 1: 2000 wins
    x[1, [1600, 100, 3100]] = 10.0                   # all three shards: 100
    x[2, [1501, 3002]] = 10.0                        # first column of shards 1 and 2
    x[3, [1500, 1501]] = 10.0                        # last column of shard 0 and first of shard 1
    x[4, 3002] = 10.0                                # top-2 in another shard than top-1:
    x[4, 5] = 9.0                                    #   margin from shard 0's top1
    x = x.to(dtype)
    s = merged_stats(x, ceil_div_shards(V, R), shuffle=True)
    assert s.argmax.tolist() == [2000, 100, 1501, 1500, 3002]
    assert s.margin[:4].tolist() == [0.0] * 4
    check(s, x, ops.token_stats(x))


def test_partial_columns_and_bytes():
    x = torch.randn(3, 50)
    x[1, 7] = x[1, 3] = 99.0                         # tie inside the shard: top2 == top1
    p = ops.token_stats_partial(x, 1000)
    top = x.double().topk(2, dim=-1)
    assert torch.equal(p[:, 0], top.values[:, 0])  # top1 is the exact logit
    torch.testing.assert_close(p[:, 1], top.values[:, 1], rtol=0, atol=1e-5)
    assert p[1, 1].item() == 99.0
    torch.testing.assert_close(p[:, 2], torch.logsumexp(x.double(), -1), rtol=0, atol=1e-6)
    assert p[:, 4].tolist() == [1000.0 + i for i in x.argmax(-1).tolist()]
    assert p.numel() * p.element_size() == 3 * 40   # 40 bytes per row and rank on the wire


def test_empty_batch():
    x = torch.randn(0, 10)
    s = ops.merge_token_stats(torch.stack([ops.token_stats_partial(x[:, :5], 0), ops.token_stats_partial(x[:, 5:], 5)]))
    assert s.entropy.shape == (0,) and s.argmax.shape == (0,)
    assert ops.merge_argmax(ops.argmax_partial(x.view(0, 1, 10), 0)[None]).shape == (0, 1)


def greedy_argmax(x):
    """The ops.sample / ops.verify greedy token: argmax with NaN as -inf (rows of all -inf/NaN -> 0)."""
    return torch.argmax(clean_logits(x), dim=-1)


def merged_argmax(x, shards, shuffle=False):
    parts = [ops.argmax_partial(x[..., a:b], a) for a, b in shards]
    for p in parts:
        assert p.shape == (*x.shape[:-1], 2) and p.dtype == torch.float64
    if shuffle:
        random.Random(1).shuffle(parts)
    return ops.merge_argmax(torch.stack(parts))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("V", [7, 1000, 4501])
@pytest.mark.parametrize("R", RANKS)
def test_greedy_argmax_matches_unsharded(device, V, R, dtype):
    shards, cut, x = sharded_special_rows(V, R, dtype, device)     # x [14, V]: every special row
    got = merged_argmax(x, shards, shuffle=True)
    assert got.dtype == torch.int64
    assert torch.equal(got, greedy_argmax(x))
    # NaN rows: NaN is never the greedy token (unlike token_stats' argmax)
    assert got[[2, 3, 6, 11, 12]].tolist() == [torch.argmax(clean_logits(x[r])).item() for r in (2, 3, 6, 11, 12)]
    assert got[12].item() == 0 and got[13].item() == cut - 1
    x3 = (torch.randn(3, 5, V) * 4).to(dtype).to(device)  # [B, K+1, V]
    assert torch.equal(merged_argmax(x3, random_shards(V, R, 3) if R > 1 else shards), greedy_argmax(x3))


def _verify_backends(device):
    return [b for b in available_backends(torch.device(device), native="verify", triton_kernel=True)
            if not (b == "triton" and device == "cpu")]  # the interpreter is covered by test_verify.py


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("R", RANKS)
def test_greedy_verify_matches_ops_verify(device, R, dtype):
    V, B, K = 1001, 8, 4
    gen = torch.Generator().manual_seed(R)
    x = (torch.randn(B, K + 1, V, generator=gen) * 3).to(dtype)
    x[5, 2, :] = -math.inf                            # all -inf position: target token 0
    x[6, 1, 17] = math.nan                            # NaN ignored by greedy verification
    x[7, 0, 900] = math.inf
    x = x.to(device)
    target = greedy_argmax(x).cpu()
    # drafts agreeing with the target for a random prefix, then one disagreeing token
    draft = torch.randint(0, V, (B, K), generator=gen)
    keep = torch.randint(0, K + 1, (B,), generator=gen)
    for b in range(B):
        draft[b, :keep[b]] = target[b, :keep[b]]
        if keep[b] < K and draft[b, keep[b]] == target[b, keep[b]]:
            draft[b, keep[b]] = (target[b, keep[b]] + 1) % V
    draft = draft.to(device)
    merged = merged_argmax(x, ceil_div_shards(V, R))
    for num_draft in (None, torch.tensor([0, 1, 2, 3, 4, 4, 2, 1], device=device)):
        got = ops.greedy_verify_sharded(draft, merged, num_draft)
        assert all(t.dtype == torch.int64 and t.shape == (B,) for t in got)
        for backend in _verify_backends(device):
            want = ops.verify(draft, x, num_draft=num_draft, temperature=0.0, backend=backend)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]), (backend, got, want)


def test_greedy_verify_no_drafts_and_out_of_vocab():
    x = torch.randn(2, 1, 30)
    acc, nxt = ops.greedy_verify_sharded(torch.zeros(2, 0, dtype=torch.int64), merged_argmax(x, [(0, 11), (11, 30)]))
    assert acc.tolist() == [0, 0] and nxt.tolist() == x[:, 0].argmax(-1).tolist()
    x = torch.randn(1, 3, 30)
    draft = torch.tensor([[x[0, 0].argmax().item(), 30]])  # second draft outside [0, V): rejected
    acc, nxt = ops.greedy_verify_sharded(draft, merged_argmax(x, [(0, 15), (15, 30)]))
    assert acc.tolist() == [1] and nxt.item() == x[0, 1].argmax().item()


def test_bad_inputs_name_the_argument():
    x = torch.randn(2, 8)
    with pytest.raises(ValueError, match="vocab_offset=-1 must be a non-negative int"):
        ops.token_stats_partial(x, -1)
    with pytest.raises(ValueError, match="vocab_offset=True"):
        ops.argmax_partial(x, True)
    with pytest.raises(TypeError, match="token_stats_partial: logits_shard has dtype float64"):
        ops.token_stats_partial(x.double(), 0)
    with pytest.raises(ValueError, match="logits_shard has size 0 along dim 1"):
        ops.token_stats_partial(x[:, :0], 0)
    with pytest.raises(ValueError, match=r"stride 1 along its last dimension"):
        ops.token_stats_partial(torch.randn(8, 2).t(), 0)
    with pytest.raises(ValueError, match=r"merge_token_stats: partials must be 3-D, got shape \(2, 5\)"):
        ops.merge_token_stats(torch.zeros(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"partials has shape \(1, 2, 4\); it must be \[R, B, 5\]"):
        ops.merge_token_stats(torch.zeros(1, 2, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="partials has dtype float32"):
        ops.merge_token_stats(torch.zeros(1, 2, 5))
    with pytest.raises(ValueError, match=r"merge_argmax: partials has shape \(2, 3, 5\)"):
        ops.merge_argmax(torch.zeros(2, 3, 5, dtype=torch.float64))
    draft = torch.zeros(2, 3, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"merged_argmax has shape \(2, 3\).*\[B, K\+1\] = \[2, 4\]"):
        ops.greedy_verify_sharded(draft, torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"num_draft=5 is out of range \[0, K=3\]"):
        ops.greedy_verify_sharded(draft, torch.zeros(2, 4, dtype=torch.int64), torch.tensor([1, 5]))
    with pytest.raises(TypeError, match="draft_tokens has dtype int32"):
        ops.greedy_verify_sharded(draft.int(), torch.zeros(2, 4, dtype=torch.int64))
