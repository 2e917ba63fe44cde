"""Scaling law of collaboration frequency: ``CF(r) = b - a * r**(-alpha)``, ``r = N_large / N_small``.

Fitted by non-linear least squares (scipy.optimize.curve_fit) with initial guess (1, 1, 1) and every
parameter bounded below by 0.05, as FS-GEN did (methods doc section 4). Rows come from a CSV
(columns large_params, small_params, cf), a JSON list of such objects, or trace files whose meta has
large_params / small_params (CF token-weighted per model pair).
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass

import numpy as np

_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMbBgGtT]?)\s*$")
REQUIRED = ("large_params", "small_params", "cf")


def parse_size(value) -> float:
    """Parameter count from a number or a string like ``7B``, ``0.5B``, ``135M``, ``1.8b``, ``350k``."""
    if isinstance(value, bool):
        raise ValueError(f"parameter count {value!r} is not a number; write e.g. 7B, 135M or 1.3e9")
    if isinstance(value, (int, float)):
        out = float(value)
    else:
        m = _SIZE_RE.match(str(value).replace(",", "").replace("_", ""))
        if not m:
            raise ValueError(f"cannot parse parameter count {value!r}; write e.g. 7B, 0.5B, 135M, 350k or 1.3e9")
        out = float(m.group(1)) * _SUFFIX[m.group(2).lower()]
    if not math.isfinite(out) or out <= 0:
        raise ValueError(f"parameter count {value!r} must be a positive number")
    return out


@dataclass
class ScalingRow:
    large_params: float
    small_params: float
    cf: float
    label: str = ""

    @property
    def ratio(self) -> float:
        return self.large_params / self.small_params


def make_rows(records: list[dict], where: str = "rows") -> list[ScalingRow]:
    rows = []
    for i, rec in enumerate(records, 1):
        if not isinstance(rec, dict):
            raise ValueError(f"{where}: row {i} is {type(rec).__name__}, expected an object with {list(REQUIRED)}")
        missing = [k for k in REQUIRED if k not in rec or rec[k] in (None, "")]
        if missing:
            raise ValueError(f"{where}: row {i} is missing column(s) {missing}; every row needs {list(REQUIRED)}")
        try:
            lp, sp = parse_size(rec["large_params"]), parse_size(rec["small_params"])
        except ValueError as exc:
            raise ValueError(f"{where}: row {i}: {exc}") from None
        try:
            cf = float(rec["cf"])
        except (TypeError, ValueError):
            raise ValueError(f"{where}: row {i}: cf={rec['cf']!r} is not a number") from None
        if not math.isfinite(cf):
            raise ValueError(f"{where}: row {i}: cf={rec['cf']!r} is not finite")
        if sp >= lp:
            raise ValueError(f"{where}: row {i}: small_params ({rec['small_params']}) must be smaller than "
                             f"large_params ({rec['large_params']}); swap the columns?")
        label = str(rec.get("label") or f"{rec['large_params']}/{rec['small_params']}")
        rows.append(ScalingRow(lp, sp, cf, label))
    return rows


def rows_from_traces(paths) -> list[ScalingRow]:
    """One row per (large_params, small_params, dataset) found in the traces' meta."""
    from .samples import load_samples

    groups: dict[tuple, list[int]] = {}
    for s in load_samples(paths):
        lp, sp = s.meta.get("large_params"), s.meta.get("small_params")
        if lp in (None, "") or sp in (None, ""):
            raise ValueError(f"{s.file}: trace has no meta large_params/small_params; pass a CSV/JSON of "
                             "large_params,small_params,cf instead, or re-run eval with --large-params/--small-params")
        key = (str(lp), str(sp), s.dataset)
        acc = groups.setdefault(key, [0, 0])
        acc[0] += s.mismatches
        acc[1] += s.total_tokens
    recs = [{"large_params": k[0], "small_params": k[1], "cf": m / t if t else float("nan"),
             "label": f"{k[0]}/{k[1]}" + (f" {k[2]}" if k[2] else "")} for k, (m, t) in groups.items()]
    return make_rows(recs, "traces")


def load_rows(paths) -> list[ScalingRow]:
    """Rows from one CSV or JSON file, or from trace/record JSONL files."""
    paths = [os.fspath(p) for p in paths]
    if len(paths) == 1 and paths[0].lower().endswith(".csv"):
        with open(paths[0], newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            cols = [c.strip() for c in (reader.fieldnames or [])]
            missing = [k for k in REQUIRED if k not in cols]
            if missing:
                raise ValueError(f"{paths[0]}: missing column(s) {missing}; header must have {list(REQUIRED)}, got {cols}")
            recs = [{k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in r.items() if k} for r in reader]
        return make_rows(recs, paths[0])
    if len(paths) == 1 and paths[0].lower().endswith(".json"):
        with open(paths[0], encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data, dict) and "rows" in data:
            data = data["rows"]
        if not isinstance(data, list):
            raise ValueError(f"{paths[0]}: expected a JSON list of objects with {list(REQUIRED)}")
        return make_rows(data, paths[0])
    return rows_from_traces(paths)


def scaling_law(r, a, alpha, b):
    return b - a * np.power(r, -alpha)


@dataclass
class ScalingFit:
    a: float
    alpha: float
    b: float
    r2: float
    n: int

    def line(self) -> str:
        return f"a={self.a:.4f} alpha={self.alpha:.4f} b={self.b:.4f} r2={self.r2:.4f} n={self.n}"

    def to_dict(self) -> dict:
        return {"a": self.a, "alpha": self.alpha, "b": self.b, "r2": self.r2, "n": self.n}

    def predict(self, r) -> np.ndarray:
        return scaling_law(np.asarray(r, dtype=np.float64), self.a, self.alpha, self.b)


def fit_scaling_law(rows: list[ScalingRow]) -> ScalingFit:
    from scipy.optimize import curve_fit

    if len(rows) < 3:
        raise ValueError(f"the scaling law has 3 parameters: need at least 3 rows, got {len(rows)}")
    r = np.array([x.ratio for x in rows], dtype=np.float64)
    cf = np.array([x.cf for x in rows], dtype=np.float64)
    popt, _ = curve_fit(scaling_law, r, cf, p0=(1.0, 1.0, 1.0),
                        bounds=([0.05] * 3, [np.inf] * 3), maxfev=20000)
    pred = scaling_law(r, *popt)
    ss_res = float(((cf - pred) ** 2).sum())
    ss_tot = float(((cf - cf.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)
    return ScalingFit(float(popt[0]), float(popt[1]), float(popt[2]), r2, len(rows))


def plot_scaling(rows: list[ScalingRow], fit: ScalingFit, out_dir: str, echo: bool = False, console=None) -> str:
    from .report import new_figure, save_figure, write_table

    stem = os.path.join(out_dir, "scaling_law")
    r = np.array([x.ratio for x in rows])
    cf = np.array([x.cf for x in rows])
    fig, (ax,) = new_figure(7, 4.5)
    ax.scatter(r, cf, color="tab:blue", zorder=3, label="measured CF")
    grid = np.geomspace(max(1.0, r.min() / 1.5), r.max() * 1.5, 200)
    ax.plot(grid, fit.predict(grid), color="tab:red",
            label=f"CF = {fit.b:.3f} - {fit.a:.3f} r^(-{fit.alpha:.3f})  (R²={fit.r2:.3f})")
    for x in rows:
        ax.annotate(x.label, (x.ratio, x.cf), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("parameter ratio r = N_large / N_small (log scale)")
    ax.set_ylabel("collaboration frequency (mismatches / tokens)")
    ax.set_title(f"Scaling law of collaboration frequency (n={fit.n})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_figure(fig, stem)
    table = [[x.label, x.large_params, x.small_params, x.ratio, x.cf, float(fit.predict(x.ratio))] for x in rows]
    write_table(stem, "Scaling-law data and fit", ["label", "large_params", "small_params", "ratio", "cf", "cf_fit"],
                table, echo=echo, console=console)
    return stem + ".png"
