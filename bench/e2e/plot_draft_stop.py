#!/usr/bin/env python
"""Table (.md) and plot (.png) of a ``run_draft_stop.py`` result: tokens/s against the draft_stop
threshold per early-exit draft and batch size, fixed K / adaptive K / large / HF assisted as lines.

    python bench/e2e/plot_draft_stop.py bench/results/draft_stop_cpu_smollm2.json

The .md starts with a summary per (draft, batch): the best fixed K, adaptive K, the best and worst
threshold with and without back-off, the recommended rule and HF assisted, as tokens/s and as ratios
to ``large`` and to the best fixed K; the run-to-run spread (max - min over median, worst row of the
group) says how much of a difference is noise. The full table follows.
"""
from __future__ import annotations

import json
import sys


def _f(v, nd=2):
    return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def _spread(r) -> float:
    xs = r["tokens_per_s_runs"]
    return (max(xs) - min(xs)) / r["tokens_per_s"]


def groups(doc: dict) -> list[tuple[int, int, list]]:
    keys = sorted({(r["early_exit"], r["batch"]) for r in doc["rows"]})
    return [(n, b, [r for r in doc["rows"] if (r["early_exit"], r["batch"]) == (n, b)]) for n, b in keys]


def _gates(rows, backoff: bool):
    return [r for r in rows if r.get("kind") == "gate" and (r.get("backoff") != 0) == backoff]


def summary(doc: dict) -> str:
    head = ("N", "batch", "large tok/s", "best fixed K", "adaptive K", "gate best T", "gate worst T",
            "gate best T, no back-off", "recommended", "HF assisted", "run spread")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(r, best_k):
        if r is None:
            return "-"
        lab = f"T={r['threshold']:g}: " if r.get("threshold") is not None else ""
        return f"{lab}{r['tokens_per_s']:.1f} ({r['x_large']:.2f}x large, {r['tokens_per_s'] / best_k:.2f}x best K)"

    for n, b, rows in groups(doc):
        by = {r["kind"]: r for r in rows if r.get("kind") in ("large", "adaptive", "hf-assisted", "recommended")}
        fixed = max((r for r in rows if r.get("kind") == "fixed"), key=lambda r: r["tokens_per_s"])
        bk = fixed["tokens_per_s"]
        gb, gn = _gates(rows, True), _gates(rows, False)
        lines.append("| " + " | ".join([
            str(n), str(b), f"{by['large']['tokens_per_s']:.1f}",
            f"K={fixed['K']}: {fixed['tokens_per_s']:.1f} ({fixed['x_large']:.2f}x large)",
            cell(by.get("adaptive"), bk),
            cell(max(gb, key=lambda r: r["tokens_per_s"]) if gb else None, bk),
            cell(min(gb, key=lambda r: r["tokens_per_s"]) if gb else None, bk),
            cell(max(gn, key=lambda r: r["tokens_per_s"]) if gn else None, bk),
            (by["recommended"]["rule"] + ": " + cell(by["recommended"], bk)) if "recommended" in by
            else "none (use large)",
            cell(by.get("hf-assisted"), bk), f"{max(_spread(r) for r in rows):.0%}"]) + " |")
    return "\n".join(lines)


def table(doc: dict) -> str:
    head = ("N", "batch", "contender", "tok/s", "runs tok/s", "x large", "acc/drafted", "drafted", "wasted", "stops",
            "= large")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in doc["rows"]:
        lines.append("| " + " | ".join([str(r["early_exit"]), str(r["batch"]), r["contender"], _f(r["tokens_per_s"], 1),
                                        " / ".join(f"{x:.1f}" for x in r["tokens_per_s_runs"]), _f(r["x_large"]),
                                        _f(r.get("accepted_per_drafted")), _f(r.get("drafted")), _f(r.get("wasted")),
                                        _f(r.get("draft_stops")), _f(r.get("equal_large"))]) + " |")
    notes = [f"- N={r['early_exit']}, batch={r['batch']}: draft/target cost {r['draft_cost_ratio']:.3f} "
             f"(pre-pass {r.get('draft_cost_ratio_prepass', float('nan')):.3f}); {r['recommendation']}"
             for r in doc["rows"] if "recommendation" in r]
    if any(r.get("kind") == "hf-assisted" and "first EOS" not in r.get("note", "") for r in doc["rows"]):
        notes.append("- HF assisted '= large': this file predates the EOS-aware check. HF's min_new_tokens masks "
                     "EOS, so its tokens differ from the engine's after large's first EOS; up to it they agree "
                     "(checked by hand on prompt 0).")
    env = doc["env"]
    return (f"# draft_stop on CPU ({env['model']}, early_exit:N drafts)\n\n"
            f"`{env['command']}`\n\n"
            f"{env['cpus']} CPUs, {env['threads']} torch thread(s), load average at start {env['loadavg_start']}, "
            f"at end {env.get('loadavg_end')}: the machine was shared with other jobs, so absolute tokens/s are "
            f"low and only ratios within one (N, batch) group, whose contenders ran interleaved, compare. "
            f"max_new_tokens {doc['settings']['max_new_tokens']}, median of {doc['settings']['runs']} runs, "
            f"{env.get('seconds', 0) / 60:.0f} min.\n\n## Summary\n\n" + summary(doc) + "\n\n## All rows\n\n"
            + "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n")


def plot(doc: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gs = groups(doc)
    ns = sorted({n for n, _, _ in gs})
    bs = sorted({b for _, b, _ in gs})
    fig, axes = plt.subplots(len(ns), len(bs), figsize=(5.2 * len(bs), 3.8 * len(ns)), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for n, b, rows in gs:
        ax = axes[ns.index(n)][bs.index(b)]
        ax.set_visible(True)
        for backoff, style, lab in ((True, "o-", "draft_stop=entropy:T"), (False, "s--", "  ... no back-off")):
            pts = sorted((r["threshold"], r["tokens_per_s"]) for r in _gates(rows, backoff))
            if pts:
                ax.plot([t for t, _ in pts], [v for _, v in pts], style, color="tab:green" if backoff else "tab:cyan",
                        label=lab)
        fixed = sorted((r for r in rows if r.get("kind") == "fixed"), key=lambda r: r["K"])
        shades = {r["K"]: plt.cm.Blues(0.45 + 0.5 * i / max(len(fixed) - 1, 1)) for i, r in enumerate(fixed)}
        colors = {"large": "tab:red", "hf-assisted": "tab:purple", "adaptive": "tab:orange"}
        for r in rows:
            kind = r.get("kind")
            if kind == "recommended":
                if r.get("threshold") is not None:
                    ax.scatter([r["threshold"]], [r["tokens_per_s"]], marker="*", s=140, color="tab:olive", zorder=5,
                               label=f"recommended {r['rule']}")
                else:
                    ax.axhline(r["tokens_per_s"], ls="-.", lw=1, color="tab:olive", label=f"recommended {r['rule']}")
            elif kind in ("large", "hf-assisted", "adaptive", "fixed"):
                ax.axhline(r["tokens_per_s"], ls="--" if kind == "large" else ":", lw=1.4,
                           color=shades[r["K"]] if kind == "fixed" else colors[kind], label=r["contender"])
        ax.set_xscale("log")
        ax.set_xlabel("entropy threshold T (nats)")
        ax.set_ylabel("tokens/s")
        ax.set_title(f"early_exit:{n}, batch {b}")
        ax.legend(fontsize=6, loc="lower left")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv) -> int:
    src = argv[0]
    with open(src, encoding="utf-8") as f:
        doc = json.load(f)
    stem = src[:-5] if src.endswith(".json") else src
    with open(stem + ".md", "w", encoding="utf-8") as f:
        f.write(table(doc))
    plot(doc, stem + ".png")
    print(f"wrote {stem}.md, {stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
