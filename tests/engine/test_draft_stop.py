"""speculative draft_stop: rows draft while System 1 is sure (methods/gated.py, methods/draft_stop.py).

Greedy: the output equals the large model's greedy output and every round's drafted length, stop
reason and accepted length equal a per-token reference loop over the HF models (so the rule fires
where the reference says, at every position 0..K). Sampling: the joint distribution of the first two
tokens equals the large model's (chi-square). The uniform (CUDA) verification path is run on CPU by
pretending host reads cost a sync.
"""
from __future__ import annotations

import itertools

import pytest
import torch

from conftest import PROMPTS
from fsgen_engine import MethodOptions, SamplingParams
from fsgen_engine.methods import gated
from fsgen_engine.methods.draft_stop import MAX_SKIP_ROUNDS

N = 12


def entropy(z: torch.Tensor) -> float:
    lp = torch.log_softmax(z.double(), -1)
    return float(-(lp.exp() * lp).sum())


@torch.no_grad()
def reference_rounds(large, small, prompt, n, K, T, max_skip=MAX_SKIP_ROUNDS):
    """Greedy gated speculative decoding by full recompute: [(drafted, stop, accepted)], tokens.
    ``max_skip``: the back-off cap (``draft_backoff``; 0 = a first-draft fire never skips a round)."""
    toks, rounds = list(prompt), []
    skip, backoff = 0, 1
    while len(toks) - len(prompt) < n:
        drafts, stop = [], "k"
        if skip:   # backing off after a fire on the first draft: a plain large step
            skip -= 1
            toks.append(int(torch.argmax(large(torch.tensor([toks])).logits[0, -1])))
            rounds.append((0, "skip", 0))
            continue
        for _ in range(K):
            z = small(torch.tensor([toks + drafts])).logits[0, -1]
            if entropy(z) > T:
                stop = "rule"
                break
            drafts.append(int(torch.argmax(z)))
        zl = large(torch.tensor([toks + drafts])).logits[0, len(toks) - 1:]
        greedy = torch.argmax(zl, -1).tolist()
        a = 0
        while a < len(drafts) and drafts[a] == greedy[a]:
            a += 1
        toks += drafts[:a] + [greedy[a]]
        rounds.append((len(drafts), stop, a))
        if stop == "rule" and not drafts and max_skip:
            skip = min(backoff, max_skip)
            backoff = min(2 * skip, max_skip)
        else:
            backoff = 1
    return rounds, toks[len(prompt):len(prompt) + n]


def run(engine, prompts=PROMPTS, n=N, sampling=None, **opts):
    return engine.generate(prompts, sampling, method="speculative", options=MethodOptions(**opts), max_new_tokens=n,
                           ignore_eos=True, progress=False)


class NeverArrives:
    """An AlivePoll whose copies never arrive: the round always drafts K (the worst case on CUDA)."""

    def __init__(self, device):
        pass

    def push(self, alive):
        pass

    def none_alive(self):
        return False


class ArrivesAtOnce(NeverArrives):
    def push(self, alive):
        self.any = bool(alive.any())

    def none_alive(self):
        return not self.any


@pytest.fixture(params=["cpu", "uniform-never", "uniform-at-once"])
def verify_path(request, monkeypatch):
    """cpu: ragged verification; uniform-*: the CUDA path (every row fed the round's drafts)."""
    if request.param != "cpu":
        monkeypatch.setattr(gated, "host_reads_free", lambda dev: False)
        monkeypatch.setattr(gated, "AlivePoll", NeverArrives if request.param == "uniform-never" else ArrivesAtOnce)
    return request.param


# (K, entropy threshold for the agreeing drafter, for the unrelated one): thresholds inside each
# drafter's entropy range on these prompts (about 1.0-3.2 and 0.2-3.5 nats)
CASES = [(4, 2.3, 1.2), (3, 2.8, 0.8), (6, 2.0, 1.6)]


@pytest.mark.parametrize("K,T_near,T_far", [CASES[0]])
def test_greedy_uniform_verification_path(toy_engine, far_engine, hf_models, verify_path, K, T_near, T_far):
    test_greedy_equals_large_and_reference_rounds(toy_engine, far_engine, hf_models, K, T_near, T_far)


@pytest.mark.parametrize("K,T_near,T_far", CASES[1:])
def test_greedy_equals_large_and_reference_rounds(toy_engine, far_engine, hf_models, K, T_near, T_far):
    seen = set()
    for eng, small, T in ((toy_engine, "small", T_near), (far_engine, "other", T_far)):
        large = [o.token_ids for o in eng.generate(PROMPTS, method="large", max_new_tokens=N, ignore_eos=True,
                                                   progress=False)]
        outs = run(eng, num_draft_tokens=K, draft_stop=f"entropy:{T}")
        assert [o.token_ids for o in outs] == large
        for p, o in zip(PROMPTS, outs):
            rounds, toks = reference_rounds(hf_models["large"], hf_models[small], p, N, K, T)
            assert toks == o.token_ids
            r = o.trace.rounds
            assert list(zip(r["drafted"], r["stop"], r["accepted"])) == rounds
            s = o.stats
            assert s.draft_tokens == sum(x[0] for x in rounds) and s.accepted_draft_tokens == sum(x[2] for x in rounds)
            assert s.draft_stops == sum(x[1] == "rule" for x in rounds)
            assert s.wasted_draft_tokens == sum(x[0] - x[2] + (x[1] == "rule") for x in rounds)
            assert s.large_calls == len(rounds)
            seen |= {x[0] for x in rounds}
        assert eng.kv.num_free_pages == eng.kv.num_pages
    # the rule fired at several draft positions (0 = the round was one large step)
    assert len(seen) >= 3


@pytest.mark.parametrize("backoff", [0, 3])
def test_draft_backoff_cap_matches_reference(toy_engine, hf_models, backoff):
    """draft_backoff=0 (never skip) and a cap of 3: greedy output equals large's and every round's
    (drafted, stop, accepted) equals the reference with that cap."""
    large = [o.token_ids for o in toy_engine.generate(PROMPTS, method="large", max_new_tokens=N, ignore_eos=True,
                                                      progress=False)]
    outs = run(toy_engine, num_draft_tokens=4, draft_stop="entropy:1.5", draft_backoff=backoff)
    assert [o.token_ids for o in outs] == large
    stops = []
    for p, o in zip(PROMPTS, outs):
        rounds, toks = reference_rounds(hf_models["large"], hf_models["small"], p, N, 4, 1.5, max_skip=backoff)
        assert toks == o.token_ids
        assert list(zip(o.trace.rounds["drafted"], o.trace.rounds["stop"], o.trace.rounds["accepted"])) == rounds
        stops += o.trace.rounds["stop"]
    assert ("skip" in stops) == (backoff > 0) and stops.count("rule") >= 2


def test_draft_backoff_off_always_rule(far_engine):
    """draft_stop=always without back-off: every round runs the drafter once and fires (no skip rounds)."""
    for o in run(far_engine, num_draft_tokens=3, draft_stop="always", draft_backoff=0):
        assert set(o.trace.rounds["stop"]) == {"rule"} and o.stats.draft_stops == N and o.stats.draft_tokens == 0


@pytest.mark.parametrize("bad", [-1, 1.5, True, 65, "2"])
def test_bad_draft_backoff(toy_engine, bad):
    with pytest.raises(ValueError, match=f"draft_backoff={bad!r}"):
        run(toy_engine, draft_stop="entropy:1", draft_backoff=bad)


def test_draft_backoff_needs_draft_stop(toy_engine):
    with pytest.raises(ValueError, match="draft_backoff=2 is only used with draft_stop"):
        run(toy_engine, draft_backoff=2)


def test_gate_fires_at_every_position(toy_engine, hf_models):
    """Over a few thresholds every drafted length 0..K occurs, and the trace's System-1 statistics agree
    with the rule: accepted drafts had entropy <= T, a rule stop's large token had entropy > T."""
    K = 4
    seen = set()
    for T in (1.5, 2.0, 2.4, 2.8, 3.3):
        for o in run(toy_engine, num_draft_tokens=K, draft_stop=f"entropy:{T}"):
            r, ent, src = o.trace.rounds, o.trace.columns["small_entropy"], o.trace.columns["source"]
            pos = 0
            for L, stop, a in zip(r["drafted"], r["stop"], r["accepted"]):
                seen.add(L)
                emitted = src[pos:pos + a]   # the last round may be cut by max_new_tokens
                assert all(e <= T for e in ent[pos:pos + a]) and emitted == ["draft"] * len(emitted)
                if stop == "rule" and a == L and pos + a < len(ent):
                    assert ent[pos + a] > T
                pos += a + 1
    assert {0, K} <= seen and len(seen) >= K   # (the per-token reference test checks each length exactly)


@pytest.mark.parametrize("rule", ["max_prob:0.3", "margin:0.1", "never", "always"])
def test_other_rules_greedy_equal_large(far_engine, rule):
    large = [o.token_ids for o in far_engine.generate(PROMPTS, method="large", max_new_tokens=N, ignore_eos=True,
                                                      progress=False)]
    for adaptive in (False, True):
        outs = run(far_engine, num_draft_tokens=3, draft_stop=rule, adaptive_draft=adaptive)
        assert [o.token_ids for o in outs] == large
    if rule == "always":   # drafts nothing: every round is one large step, most skip the drafter (back-off)
        for o in outs:
            assert o.stats.draft_tokens == 0 and o.stats.large_calls == N
            assert o.trace.rounds["stop"][:4] == ["rule", "skip", "rule", "skip"]
            assert o.stats.draft_stops + o.trace.rounds["stop"].count("skip") == N
    if rule == "never":
        assert all(o.stats.draft_stops == 0 for o in outs)


@pytest.mark.parametrize("target,method", [("contrastive", "contrastive"), ("proxy", "proxy")])
def test_fused_target_greedy(far_engine, verify_path, target, method):
    ref = [o.token_ids for o in far_engine.generate(PROMPTS, method=method, router="always", max_new_tokens=10,
                                                    ignore_eos=True, progress=False)]
    for rule in ("entropy:0.8", "entropy:1.8", "always"):
        outs = run(far_engine, n=10, num_draft_tokens=3, target=target, draft_stop=rule)
        assert [o.token_ids for o in outs] == ref, rule


def test_n_samples_and_trace_topk(toy_engine):
    one = run(toy_engine, num_draft_tokens=3, draft_stop="entropy:2.3")
    many = toy_engine.generate(PROMPTS, n=2, method="speculative", trace_topk=5, max_new_tokens=N, ignore_eos=True,
                               progress=False, options=MethodOptions(num_draft_tokens=3, draft_stop="entropy:2.3"))
    for i, o in enumerate(one):
        for g in many[2 * i:2 * i + 2]:
            assert g.token_ids == o.token_ids and g.trace.rounds == o.trace.rounds
            assert g.trace.columns["small_entropy"][:3] == pytest.approx(o.trace.columns["small_entropy"][:3],
                                                                          nan_ok=True)
            # top-K ids: the argmax first wherever System 1 had a distribution
            for am, ids in zip(g.trace.columns["small_argmax"], g.trace.columns["small_topk_ids"]):
                assert (ids[0] == am) if am >= 0 else ids == []


def test_eos_active_greedy_equals_large(toy_engine):
    """With EOS not ignored (a drafted EOS ends the row's drafting) the output still equals large's."""
    large = toy_engine.generate(PROMPTS, method="large", max_new_tokens=N, progress=False)
    outs = toy_engine.generate(PROMPTS, method="speculative", max_new_tokens=N, progress=False,
                               options=MethodOptions(num_draft_tokens=4, draft_stop="entropy:2.8"))
    assert [o.token_ids for o in outs] == [o.token_ids for o in large]
    assert [o.finish_reason for o in outs] == [o.finish_reason for o in large]


def test_eos_stop_reason(toy_engine, monkeypatch):
    """With the drafter's argmax declared an EOS id, the first round stops drafting after 1 token."""
    from fsgen_engine.methods.speculative import Speculative

    real = Speculative.__init__

    def init(self, cfg, runner, sampler):
        real(self, cfg, runner, sampler)
        self.eos = tuple(range(3, 256))   # every ordinary token counts as EOS for the drafter's stop
    monkeypatch.setattr(Speculative, "__init__", init)
    outs = run(toy_engine, n=6, num_draft_tokens=4, draft_stop="never")
    large = [o.token_ids for o in toy_engine.generate(PROMPTS, method="large", max_new_tokens=6, ignore_eos=True,
                                                      progress=False)]
    assert [o.token_ids for o in outs] == large
    for o in outs:
        assert set(o.trace.rounds["stop"]) == {"eos"} and set(o.trace.rounds["drafted"]) == {1}


@pytest.mark.parametrize("bad,match", [("entropy:-1", "draft_stop='entropy:-1'"), ("max_prob:2", "draft_stop="),
                                       ("bogus:1", "draft_stop='bogus:1'"), (3, "draft_stop=3")])
def test_bad_draft_stop(toy_engine, bad, match):
    with pytest.raises(ValueError, match=match):
        run(toy_engine, draft_stop=bad)


def test_draft_stop_needs_speculative(toy_engine):
    with pytest.raises(ValueError, match="only used with method='speculative'"):
        toy_engine.generate(PROMPTS, method="large", options=MethodOptions(draft_stop="entropy:1"), progress=False)


@torch.no_grad()
def test_sampling_lossless_two_token_joint(far_engine, hf_models):
    """The joint law of the first two tokens equals the large model's filtered one, with a gate that fires
    after some first drafts and not after others (so both the verified and the plain-large paths are
    taken). Chi-square at p > 1e-3: a correct engine fails this test with probability 1e-3."""
    from scipy.stats import chisquare

    from fsgen_engine.reference.sample import filtered_probs

    large, small = hf_models["large"], hf_models["other"]
    kw = dict(temperature=1.3, top_k=4)
    filt = lambda z: filtered_probs(z[None].float(), torch.tensor([1.3]), torch.tensor([4]), torch.tensor([1.0]),  # noqa: E731
                                    torch.tensor([0.0]))[0].double()
    # a prompt and threshold where the drafter is sure at position 0 and unsure after some of its drafts
    for prompt in ([1, 40, 41], [1, 50, 51, 52], [1, 60], [1, 70, 71]):
        zs = small(torch.tensor([prompt])).logits[0, -1]
        h0 = entropy(zs)
        firsts = torch.nonzero(filt(zs) > 0).flatten().tolist()
        h1 = sorted(entropy(small(torch.tensor([prompt + [t]])).logits[0, -1]) for t in firsts)
        cut = [0.5 * (a + b) for a, b in zip(h1, h1[1:]) if a < b and 0.5 * (a + b) > h0]
        if cut:
            T = cut[len(cut) // 2]
            break
    else:
        pytest.skip("no prompt gives a threshold firing on some second positions only")
    p0 = filt(large(torch.tensor([prompt])).logits[0, -1])
    joint = {}
    for t0 in torch.nonzero(p0 > 0).flatten().tolist():
        p1 = filt(large(torch.tensor([prompt + [t0]])).logits[0, -1])
        for t1 in torch.nonzero(p1 > 0).flatten().tolist():
            joint[(t0, t1)] = float(p0[t0] * p1[t1])
    outs = far_engine.generate([prompt] * 75, SamplingParams(seed=7, **kw), n=8, method="speculative",
                               options=MethodOptions(num_draft_tokens=3, draft_stop=f"entropy:{T}"),
                               max_new_tokens=2, ignore_eos=True, progress=False)
    pairs = [tuple(o.token_ids[:2]) for o in outs]
    assert set(pairs) <= set(joint)
    cells = list(joint)
    obs = [pairs.count(c) for c in cells]
    exp = [joint[c] * len(pairs) for c in cells]
    assert chisquare(obs, [e / sum(exp) * len(pairs) for e in exp]).pvalue > 1e-3
    rounds = list(itertools.chain.from_iterable(zip(o.trace.rounds["drafted"], o.trace.rounds["stop"]) for o in outs))
    assert any(s == "rule" for _, s in rounds) and any(d > 0 for d, _ in rounds)
    assert sum(o.stats.mismatches for o in outs) > 0   # rejections happened: the correction path ran
