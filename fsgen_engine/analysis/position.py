"""Where mismatches happen: relative position ``index / length`` in 10 % bins (methods doc section 4).

Two numbers per bin and group: ``share`` (fraction of the group's mismatches in the bin; sums to 1)
and ``rate`` (mismatches in the bin / tokens in the bin, which corrects for samples of different
lengths). FS-GEN's finding: collaboration concentrates at the start of a generation.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .samples import Sample, group_samples

N_BINS = 10


def bin_index(rel: float, n_bins: int = N_BINS) -> int:
    return min(int(rel * n_bins + 1e-9), n_bins - 1)


@dataclass
class PositionStats:
    group: str
    mismatches: np.ndarray  # int [n_bins]
    tokens: np.ndarray      # int [n_bins]
    skipped: int            # samples without positional information (FS-GEN records, sparse routers)

    @property
    def share(self) -> np.ndarray:
        total = self.mismatches.sum()
        return self.mismatches / total if total else np.full(len(self.mismatches), np.nan)

    @property
    def rate(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.tokens > 0, self.mismatches / np.maximum(self.tokens, 1), np.nan)


def position_stats(samples: list[Sample], group: str = "all", n_bins: int = N_BINS) -> PositionStats:
    mism = np.zeros(n_bins, dtype=np.int64)
    toks = np.zeros(n_bins, dtype=np.int64)
    skipped = 0
    for s in samples:
        if s.positions is None:
            skipped += 1
            continue
        for p in s.positions:
            mism[bin_index(p, n_bins)] += 1
        n = s.total_tokens
        for i in range(n):
            toks[bin_index(i / n, n_bins)] += 1
    return PositionStats(group, mism, toks, skipped)


def bin_labels(n_bins: int = N_BINS) -> list[str]:
    step = 100 // n_bins
    return [f"{i * step}-{(i + 1) * step}%" for i in range(n_bins)]


def analyze_position(samples: list[Sample], out_dir: str | None = None, by: str = "auto",
                     echo: bool = True) -> list[PositionStats]:
    from .report import new_figure, save_figure, write_table

    groups = group_samples(samples, by)
    stats = [position_stats(v, k) for k, v in groups.items()]
    labels = bin_labels()
    cols = ["group", "quantity"] + labels + ["mismatches", "skipped_samples"]
    rows = []
    for st in stats:
        rows.append([st.group, "share"] + [float(x) for x in st.share] + [int(st.mismatches.sum()), st.skipped])
        rows.append([st.group, "rate"] + [float(x) for x in st.rate] + [int(st.mismatches.sum()), st.skipped])
    stem = os.path.join(out_dir, "position") if out_dir else None
    write_table(stem, "Relative position of mismatches (10 % bins)", cols, rows, echo=echo)
    if out_dir:
        mat = np.array([st.share for st in stats], dtype=np.float64)
        fig, (ax1, ax2) = new_figure(13, max(4.2, 0.55 * len(stats) + 2.2), ncols=2)
        im = ax1.imshow(np.nan_to_num(mat), aspect="auto", cmap="viridis", vmin=0)
        ax1.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax1.set_yticks(range(len(stats)), [st.group for st in stats], fontsize=8)
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                if mat[i, j] == mat[i, j]:
                    ax1.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=7,
                             color="white" if mat[i, j] < 0.6 * np.nanmax(mat) else "black")
        ax1.set_xlabel("relative position in the generation (index / length)")
        ax1.set_title("Share of mismatches per position bin")
        fig.colorbar(im, ax=ax1, label="fraction of mismatches")
        centers = (np.arange(N_BINS) + 0.5) / N_BINS * 100
        for st in stats:
            ax2.plot(centers, st.rate, marker="o", label=st.group)
        ax2.set_xlabel("relative position (%)")
        ax2.set_ylabel("mismatches / tokens in bin")
        ax2.set_title("Mismatch rate by position")
        ax2.set_xlim(0, 100)
        ax2.set_ylim(bottom=0)
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=7)
        save_figure(fig, stem)
    return stats
