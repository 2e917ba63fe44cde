"""Collaboration frequency, large-call ratio and mismatch ratio (methods doc section 4).

Per sample: the mean over samples of each sample's ratio. Token-weighted: sums over the group
(``sum mismatches / sum total_tokens``), the FS-GEN headline number.
CF = mismatches / total_tokens; large-call ratio = large_calls / total_tokens;
mismatch ratio = mismatches / large_calls (how often System 2 disagreed when it was asked).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from .samples import Sample, group_samples


@dataclass
class CollabStats:
    group: str
    samples: int
    total_tokens: int
    large_calls: int
    mismatches: int
    cf_token: float          # sum mismatches / sum tokens
    cf_sample: float         # mean of per-sample CF
    large_ratio_token: float
    large_ratio_sample: float
    mismatch_ratio_token: float   # sum mismatches / sum large calls
    mismatch_ratio_sample: float  # mean over samples with at least one large call


def _div(a, b) -> float:
    return float(a) / float(b) if b else float("nan")


def collab_stats(samples: list[Sample], group: str = "all") -> CollabStats:
    tot = sum(s.total_tokens for s in samples)
    lc = sum(s.large_calls for s in samples)
    mm = sum(s.mismatches for s in samples)
    nonempty = [s for s in samples if s.total_tokens]
    called = [s for s in samples if s.large_calls]
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")  # noqa: E731
    return CollabStats(
        group=group,
        samples=len(samples),
        total_tokens=tot,
        large_calls=lc,
        mismatches=mm,
        cf_token=_div(mm, tot),
        cf_sample=mean([s.mismatches / s.total_tokens for s in nonempty]),
        large_ratio_token=_div(lc, tot),
        large_ratio_sample=mean([s.large_calls / s.total_tokens for s in nonempty]),
        mismatch_ratio_token=_div(mm, lc),
        mismatch_ratio_sample=mean([s.mismatches / s.large_calls for s in called]),
    )


COLUMNS = ("group", "samples", "total_tokens", "large_calls", "mismatches", "cf_token", "cf_sample",
           "large_ratio_token", "large_ratio_sample", "mismatch_ratio_token", "mismatch_ratio_sample")


def analyze_collab(samples: list[Sample], out_dir: str | None = None, by: str = "auto",
                   echo: bool = True) -> list[CollabStats]:
    """Stats per group (plus an ``all`` row when there are several groups); bar plot in out_dir."""
    from .report import new_figure, save_figure, write_table

    groups = group_samples(samples, by)
    rows = [collab_stats(v, k) for k, v in groups.items()]
    if len(rows) > 1:
        rows.append(collab_stats(samples, "all"))
    table = [[asdict(r)[c] for c in COLUMNS] for r in rows]
    stem = os.path.join(out_dir, "collab") if out_dir else None
    write_table(stem, "Collaboration statistics", COLUMNS, table, echo=echo)
    if out_dir:
        plotted = [r for r in rows if r.group != "all"] or rows
        fig, (ax,) = new_figure(max(6.0, 1.6 * len(plotted) + 3), 4.5)
        x = np.arange(len(plotted))
        w = 0.27
        for j, (attr, label) in enumerate([("cf_token", "collaboration frequency (mismatches/tokens)"),
                                           ("large_ratio_token", "large-call ratio (calls/tokens)"),
                                           ("mismatch_ratio_token", "mismatch ratio (mismatches/calls)")]):
            vals = [getattr(r, attr) for r in plotted]
            bars = ax.bar(x + (j - 1) * w, vals, w, label=label)
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_xticks(x, [r.group for r in plotted], rotation=20 if len(plotted) > 2 else 0, ha="right"
                      if len(plotted) > 2 else "center", fontsize=8)
        ax.set_ylabel("ratio (token-weighted)")
        ax.set_ylim(0, 1.15)
        ax.axhline(0.2, color="grey", lw=0.8, ls="--", label="CF = 0.2 (FS-GEN: most settings below)")
        ax.set_title("Collaboration between small and large model")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12 if len(plotted) <= 2 else -0.25), ncol=2)
        save_figure(fig, stem)
    return rows
