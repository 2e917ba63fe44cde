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
