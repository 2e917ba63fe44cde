"""System-1 uncertainty at match vs mismatch steps, and which statistic best predicts a mismatch.

Statistics: entropy (nats), max probability, margin (p1 - p2). Each is oriented so that a larger
score means "more likely a mismatch" (entropy as is, max_prob and margin negated) before computing
the ROC AUC; an AUC of 0.5 is chance, 1.0 a perfect router. The best statistic is the router to use
(``entropy:t``, ``max_prob:t`` or ``margin:t``); the suggested threshold maximises TPR - FPR
(Youden's J) on the given data.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from fsgen_engine.methods.draft_stop import MAX_SKIP_ROUNDS

from .samples import Sample

# statistic -> (sign applied to get "higher = mismatch", router name, router fires when)
STATS = {
    "entropy": (1.0, "entropy", "H > t"),
    "max_prob": (-1.0, "max_prob", "max p < t"),
    "margin": (-1.0, "margin", "p1 - p2 < t"),
}


@dataclass
class StatResult:
    stat: str
    auc: float
    threshold: float           # suggested router threshold (in the statistic's own units)
    match_mean: float
    mismatch_mean: float
    match_median: float
    mismatch_median: float


@dataclass
class UncertaintyResult:
    n_steps: int
    n_mismatch: int
    stats: list[StatResult]
    values: dict                # stat -> (match array, mismatch array), for plotting

    @property
    def best(self) -> StatResult | None:
        ok = [s for s in self.stats if s.auc == s.auc]
        return max(ok, key=lambda s: s.auc) if ok else None

    def recommendation(self) -> str:
        b = self.best
        if b is None:
            return ("recommendation: not enough labelled steps (need both matches and mismatches under a "
                    "router that fires; use --router always) to rank the routers")
        sign, router, rule = STATS[b.stat]
        return (f"recommendation: use router {router}:{b.threshold:.3g} (fires when {rule}); "
                f"{b.stat} predicts mismatches best with ROC AUC {b.auc:.3f} over {self.n_steps} steps")


def pooled(samples: list[Sample]) -> tuple[dict, np.ndarray]:
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)  # noqa: E731
    vals = {k: cat([getattr(s, k) for s in samples]) for k in STATS}
    labels = np.concatenate([s.mismatch for s in samples]).astype(bool) if samples else np.zeros(0, bool)
    ok = np.ones(len(labels), dtype=bool)
    for v in vals.values():
        ok &= np.isfinite(v)
    return {k: v[ok] for k, v in vals.items()}, labels[ok]


def _youden_threshold(labels: np.ndarray, score: np.ndarray, sign: float) -> float:
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(labels, score)
    finite = np.isfinite(thr)
    i = int(np.argmax(np.where(finite, tpr - fpr, -np.inf)))
    # roc_curve's thresholds are observed scores (fires when score >= thr); routers fire on a strict
    # inequality, so put the cut halfway to the next lower observed score.
    t = thr[i]
    if i + 1 < len(thr) and np.isfinite(thr[i + 1]):
        t = 0.5 * (thr[i] + thr[i + 1])
    return float(t * sign)


def analyze_values(vals: dict, labels: np.ndarray) -> UncertaintyResult:
    from sklearn.metrics import roc_auc_score

    results = []
    both = labels.any() and (~labels).any()
    for name, (sign, _, _) in STATS.items():
        v = vals[name]
        m, mm = v[~labels], v[labels]
        med = lambda a: float(np.median(a)) if len(a) else math.nan  # noqa: E731
        mean = lambda a: float(np.mean(a)) if len(a) else math.nan  # noqa: E731
        if both:
            auc = float(roc_auc_score(labels, sign * v))
            thr = _youden_threshold(labels, sign * v, sign)
        else:
            auc, thr = math.nan, math.nan
        results.append(StatResult(name, auc, thr, mean(m), mean(mm), med(m), med(mm)))
    values = {k: (vals[k][~labels], vals[k][labels]) for k in STATS}
    return UncertaintyResult(int(len(labels)), int(labels.sum()), results, values)


COLUMNS = ("statistic", "roc_auc", "suggested_threshold", "match_mean", "mismatch_mean",
           "match_median", "mismatch_median")


def analyze_uncertainty(samples: list[Sample], out_dir: str | None = None, echo: bool = True) -> UncertaintyResult:
    from .report import new_figure, save_figure, write_table

    vals, labels = pooled(samples)
    res = analyze_values(vals, labels)
    rows = [[s.stat, s.auc, s.threshold, s.match_mean, s.mismatch_mean, s.match_median, s.mismatch_median]
            for s in res.stats]
    stem = os.path.join(out_dir, "uncertainty") if out_dir else None
    write_table(stem, f"System-1 uncertainty at match vs mismatch steps ({res.n_steps} steps, "
                      f"{res.n_mismatch} mismatches)", COLUMNS, rows, echo=echo)
    if out_dir:
        fig, axes = new_figure(15, 4.3, ncols=3)
        xlabels = {"entropy": "entropy of p_small (nats)", "max_prob": "max probability of p_small",
                   "margin": "margin p1 - p2 of p_small"}
        for ax, s in zip(axes, res.stats):
            m, mm = res.values[s.stat]
            hi = max([float(np.max(a)) for a in (m, mm) if len(a)] + [1.0 if s.stat != "entropy" else 1e-3])
            bins = np.linspace(0, hi, 31)
            if len(m):
                ax.hist(m, bins=bins, density=True, alpha=0.55, label=f"match (n={len(m)})", color="tab:blue")
            if len(mm):
                ax.hist(mm, bins=bins, density=True, alpha=0.55, label=f"mismatch (n={len(mm)})", color="tab:red")
            if s.threshold == s.threshold:
                ax.axvline(s.threshold, color="k", ls="--", lw=1, label=f"suggested t={s.threshold:.3g}")
            ax.set_xlabel(xlabels[s.stat])
            ax.set_ylabel("density")
            ax.set_title(f"{s.stat}: ROC AUC {s.auc:.3f}" if s.auc == s.auc else f"{s.stat}: AUC n/a")
            ax.legend(fontsize=8)
        fig.suptitle("Small-model uncertainty at steps where the large model agrees vs disagrees")
        save_figure(fig, stem)
    return res


# ----------------------------------------------------------------------------------------- draft_stop
DRAFT_STOP_COLUMNS = ("statistic", "threshold", "tokens_per_cost", "accepted_per_drafted", "drafted_per_round")


@dataclass
class DraftStopChoice:
    """The ``draft_stop`` rule that maximises expected tokens per unit cost (one large step = 1 unit,
    one draft-model step = ``cost_ratio`` units), next to plain K drafting and the large model alone."""

    rule: str | None           # "entropy:T" etc.; None: plain K drafting is best
    tokens_per_cost: float
    fixed_k_tokens_per_cost: float
    accepted_per_drafted: float
    num_draft_tokens: int
    cost_ratio: float
    table: list                # rows of DRAFT_STOP_COLUMNS

    def line(self) -> str:
        k = self.num_draft_tokens
        if self.tokens_per_cost <= 1.0:
            return (f"draft_stop: speculative decoding does not pay at K={k} and draft/target cost {self.cost_ratio:g} "
                    f"(best {self.tokens_per_cost:.3f} tokens per large step, fixed K {self.fixed_k_tokens_per_cost:.3f}); "
                    f"use method=large")
        what = f"draft_stop={self.rule}" if self.rule else "no draft_stop (plain K)"
        return (f"draft_stop: use {what} with K={k}: {self.tokens_per_cost:.3f} expected tokens per large-step "
                f"cost at draft/target cost {self.cost_ratio:g} (fixed K: {self.fixed_k_tokens_per_cost:.3f}, "
                f"large alone: 1), {self.accepted_per_drafted:.2f} accepted per drafted token")


def simulate_draft_stop(seqs: list, stat: str | None, threshold: float | None, k: int,
                        cost_ratio: float) -> tuple[int, float, int, int, int]:
    """Greedy gated speculative decoding replayed on traces: ``seqs`` is a list of ``(values, mismatch)``
    arrays in token order (System 1's ``stat`` and whether the large model disagreed at each token).
    A round drafts while the rule does not fire (NaN fires, as routers do), up to ``k``; it emits the
    leading matching drafts plus one large token and costs ``cost_ratio`` per draft step (including
    the one the rule fired on) plus 1. A rule firing on the first draft makes the next 1, 2, 4, ...
    (up to ``MAX_SKIP_ROUNDS``) rounds plain large steps (cost 1), as the engine backs off
    (methods/draft_stop.py). Returns (tokens, cost, accepted, drafted, rounds). After a rejection
    the trace's statistics stand in for the drafter's on its own (rejected) prefix, which changes only
    the cost of the drafts after it."""
    sign = STATS[stat][0] if stat else 0.0
    tokens = cost = accepted = drafted = rounds = 0
    for v, mism in seqs:
        n = len(mism)
        fire = np.zeros(n, bool) if stat is None else (~np.isfinite(v)) | (sign * v > sign * threshold)
        i, skip_left, next_skip = 0, 0, 1
        while i < n:
            if skip_left > 0:
                skip_left -= 1
                tokens, cost, rounds, i = tokens + 1, cost + 1.0, rounds + 1, i + 1
                continue
            L = 0
            while L < k and i + L < n and not fire[i + L]:
                L += 1
            fired = i + L < n and L < k and bool(fire[i + L])
            if fired and L == 0:
                skip_left, next_skip = next_skip, min(2 * next_skip, MAX_SKIP_ROUNDS)
            else:
                next_skip = 1
            a = 0
            while a < L and not mism[i + a]:
                a += 1
            emitted = min(a + 1, n - i)
            tokens += emitted
            cost += cost_ratio * (L + fired) + 1.0
            accepted += a
            drafted += L
            rounds += 1
            i += emitted
    return tokens, cost, accepted, drafted, rounds


def recommend_draft_stop(samples: list[Sample], k: int, cost_ratio: float, grid: int = 40) -> DraftStopChoice:
    """Search each statistic's thresholds (``grid`` quantiles of its observed values) for the rule with
    the most expected tokens per unit cost (``simulate_draft_stop``). Use traces where System 1 and
    the large model ran at every token (``--method oracle --router always``), so every step is labelled."""
    if not 1 <= k:
        raise ValueError(f"num_draft_tokens={k} must be >= 1")
    if not cost_ratio > 0:
        raise ValueError(f"draft cost ratio {cost_ratio} must be > 0 (time of one draft step / one large step)")
    seqs = {s: [(getattr(x, s), np.asarray(x.mismatch, bool)) for x in samples] for s in STATS}
    if not any(len(m) for _, m in seqs["entropy"]):
        raise ValueError("no labelled steps in the traces; generate them with --method oracle --router always")
    tok, cst, acc, dr, nr = simulate_draft_stop(seqs["entropy"], None, None, k, cost_ratio)
    fixed = tok / cst
    best = (fixed, None, acc / max(dr, 1))
    table = [["none", float("nan"), fixed, acc / max(dr, 1), dr / max(nr, 1)]]
    for stat in STATS:
        vals = np.concatenate([v for v, _ in seqs[stat]])
        vals = vals[np.isfinite(vals)]
        for t in np.unique(np.quantile(vals, np.linspace(0.0, 1.0, grid + 1))):
            tok, cst, acc, dr, nr = simulate_draft_stop(seqs[stat], stat, float(t), k, cost_ratio)
            table.append([stat, float(t), tok / cst, acc / max(dr, 1), dr / max(nr, 1)])
            if tok / cst > best[0] + 1e-12:
                best = (tok / cst, f"{STATS[stat][1]}:{float(t):.4g}", acc / max(dr, 1))
    return DraftStopChoice(best[1], best[0], fixed, best[2], k, cost_ratio, table)


def write_draft_stop(samples: list[Sample], k: int, cost_ratio: float, out_dir: str | None = None,
                     echo: bool = False) -> DraftStopChoice:
    """``recommend_draft_stop`` plus, with ``out_dir``, its search as draft_stop.md / .csv."""
    from .report import write_table

    choice = recommend_draft_stop(samples, k, cost_ratio)
    if out_dir:
        write_table(os.path.join(out_dir, "draft_stop"), f"Expected tokens per large-step cost, K={k}, draft/target "
                    f"cost {cost_ratio:g} (simulated on the traces)", DRAFT_STOP_COLUMNS, choice.table, echo=echo)
    return choice
