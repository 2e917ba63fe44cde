"""Model pairs of a multi-pair sweep (``--pair``, ``--pair-params``, ``--pairs FILE``) and the
cross-pair outputs: collaboration frequency per pair and method, and the scaling-law fit across pairs.

Collaboration frequency is measured under the ``always`` router (methods doc section 4), so a
multi-pair sweep runs every method with ``always`` besides the swept routers.
"""
from __future__ import annotations

import csv
import json
import os

from .jobs import Pair

PAIR_KEYS = ("large", "small", "large_params", "small_params", "small_ft", "label")


def _check_params(p: Pair, where: str) -> Pair:
    from fsgen_engine.analysis.scaling import parse_size

    if (p.large_params is None) != (p.small_params is None):
        raise ValueError(f"{where}: give both large_params and small_params, or neither")
    if p.large_params is not None:
        try:
            lp, sp = parse_size(p.large_params), parse_size(p.small_params)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if sp >= lp:
            raise ValueError(f"{where}: small_params {p.small_params} must be below large_params {p.large_params}")
    return p


def read_pairs_file(path: str) -> list[Pair]:
    """A JSON list of objects, or a CSV with a header, with keys large, small and optionally
    large_params, small_params, small_ft, label."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--pairs {path}: no such file")
    with open(path, encoding="utf-8", newline="") as f:
        if path.lower().endswith(".json"):
            try:
                rows = json.load(f)
            except json.JSONDecodeError as exc:
                raise ValueError(f"--pairs {path}: not valid JSON ({exc})") from None
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise ValueError(f"--pairs {path}: expected a JSON list of objects with keys {list(PAIR_KEYS)}")
        else:
            rows = [{k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in r.items() if k}
                    for r in csv.DictReader(f)]
    out = []
    for i, r in enumerate(rows, 1):
        unknown = sorted(set(r) - set(PAIR_KEYS))
        if unknown or not r.get("large") or not r.get("small"):
            raise ValueError(f"--pairs {path}: row {i} needs large and small (keys: {list(PAIR_KEYS)})"
                             + (f"; unknown {unknown}" if unknown else ""))
        vals = {k: (str(r[k]) if r.get(k) not in (None, "") else None) for k in PAIR_KEYS}
        out.append(_check_params(Pair(**{**vals, "label": vals["label"] or ""}), f"--pairs {path} row {i}"))
    return out


def pairs_from_args(pair: list | None, pair_params: list | None, pairs_file: str | None,
                    small_ft: str | None = None) -> list[Pair]:
    """Pairs of ``--pair LARGE SMALL`` (repeatable, with as many ``--pair-params``) and ``--pairs FILE``."""
    pair, pair_params = pair or [], pair_params or []
    if pair_params and len(pair_params) != len(pair):
        raise ValueError(f"--pair-params given {len(pair_params)} time(s) for {len(pair)} --pair: give one per "
                         "--pair, in the same order, or none")
    out = [_check_params(Pair(lg, sm, small_ft, *(pair_params[i] if pair_params else (None, None))),
                         f"--pair {lg} {sm}") for i, (lg, sm) in enumerate(pair)]
    if pairs_file:
        out += read_pairs_file(pairs_file)
    names = [p.name() for p in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"pairs {dup} appear more than once (by folder name); give each a distinct label in "
                         "a --pairs file")
    return out


COLUMNS = ("pair", "method", "large_params", "small_params", "ratio", "collaboration_frequency",
           "large_call_fraction", "accuracy")


def write_pairs_summary(pairs: list[Pair], rows_by_pair: dict[str, list[dict]], methods: list[str],
                        out_dir: str | None, *, echo: bool = True) -> dict:
    """Collaboration frequency per pair and method (router always) and, per method, the scaling-law
    fit across pairs (``fsgen analyze scaling-law``; needs 3 pairs with parameter counts)."""
    from fsgen_engine.analysis.report import write_table
    from fsgen_engine.analysis.scaling import fit_scaling_law, make_rows, parse_size, plot_scaling

    table, fits = [], {}
    for m in methods:
        scaling = []
        for p in pairs:
            r = next((r for r in rows_by_pair.get(p.name(), []) if r["method"] == m and r["router"] == "always"),
                     None)
            if r is None:
                continue
            ratio = parse_size(p.large_params) / parse_size(p.small_params) if p.large_params else float("nan")
            table.append([p.name(), m, p.large_params or "", p.small_params or "", ratio,
                          r["collaboration_frequency"], r["large_call_fraction"],
                          r["accuracy"] if r["accuracy"] is not None else float("nan")])
            if p.large_params:
                scaling.append({"large_params": p.large_params, "small_params": p.small_params,
                                "cf": r["collaboration_frequency"], "label": p.name()})
        if len(scaling) >= 3:
            srows = make_rows(scaling, f"sweep {m}")
            try:
                fit = fits[m] = fit_scaling_law(srows)
            except RuntimeError as exc:  # curve_fit found no optimum: report, keep the table
                if echo:
                    print(f"[sweep] scaling law ({m}): the fit did not converge ({exc})", flush=True)
                continue
            if out_dir:
                plot_scaling(srows, fit, os.path.join(out_dir, f"scaling_law_{m}"), echo=False)
            if echo:
                print(f"[sweep] scaling law ({m}, CF = b - a r^-alpha): {fit.line()}", flush=True)
        elif echo:
            print(f"[sweep] scaling law ({m}): not fitted, it needs 3 or more pairs with --pair-params "
                  f"(have {len(scaling)})", flush=True)
    stem = None
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        stem = os.path.join(out_dir, "collaboration")
        with open(os.path.join(out_dir, "scaling_law.json"), "w", encoding="utf-8") as f:
            json.dump({m: fit.to_dict() for m, fit in fits.items()}, f, indent=2)
    write_table(stem, "Collaboration frequency per pair (router always)", COLUMNS, table, echo=echo)
    return {"table": table, "fits": fits}
