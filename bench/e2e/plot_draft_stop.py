#!/usr/bin/env python
"""Table (.md) and plot (.png) of a ``run_draft_stop.py`` result: tokens/s against the draft_stop
threshold per early-exit draft and batch size, fixed K / adaptive K / large / HF assisted as lines.

    python bench/e2e/plot_draft_stop.py bench/results/draft_stop_cpu_smollm2.json
"""
from __future__ import annotations

import json
import sys


def _f(v, nd=2):
    return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def table(doc: dict) -> str:
    head = ("N", "batch", "contender", "tok/s", "runs tok/s", "x large", "acc/drafted", "drafted", "wasted", "stops")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in doc["rows"]:
        lines.append("| " + " | ".join([str(r["early_exit"]), str(r["batch"]), r["contender"], _f(r["tokens_per_s"], 1),
                                        " / ".join(f"{x:.1f}" for x in r["tokens_per_s_runs"]), _f(r["x_large"]),
                                        _f(r.get("accepted_per_drafted")), _f(r.get("drafted")), _f(r.get("wasted")),
                                        _f(r.get("draft_stops"))]) + " |")
    notes = [f"- {r['early_exit']=}, {r['batch']=}: draft/target cost {r['draft_cost_ratio']:.3f}; {r['recommendation']}"
             .replace("r['early_exit']=", "N=").replace("r['batch']=", "batch=")
             for r in doc["rows"] if "recommendation" in r]
    env = doc["env"]
    return (f"# draft_stop on CPU ({env['model']}, early_exit:N drafts)\n\n"
            f"{env['cpus']} CPUs, {env['threads']} torch threads, load average at start {env['loadavg_start']}, "
            f"at end {env.get('loadavg_end')} (machine shared with other jobs).\n\n" + "\n".join(lines) + "\n\n"
            + "\n".join(notes) + "\n")


def plot(doc: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({(r["early_exit"], r["batch"]) for r in doc["rows"]})
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.8), squeeze=False)
    for ax, (n, b) in zip(axes[0], keys):
        rows = [r for r in doc["rows"] if (r["early_exit"], r["batch"]) == (n, b)]
        gated = sorted(((float(r["contender"].split("entropy:")[1].split()[0]), r["tokens_per_s"]) for r in rows
                        if "draft_stop=entropy:" in r["contender"] and "recommended" not in r["contender"]))
        if gated:
            ax.plot([t for t, _ in gated], [v for _, v in gated], "o-", color="tab:green", label="draft_stop=entropy:T")
        for r in rows:
            c = r["contender"]
            if "recommended" in c:
                ax.scatter([float(c.split(":")[1].split()[0]) if "entropy:" in c else 0.0], [r["tokens_per_s"]],
                           marker="*", s=140, color="tab:olive", zorder=5, label="recommended rule")
            elif "draft_stop" not in c and c != "small":
                ax.axhline(r["tokens_per_s"], ls="--" if c == "large" else ":", lw=1.2,
                           color={"large": "tab:red", "hf-assisted": "tab:purple"}.get(c), label=c)
        ax.set_xscale("log")
        ax.set_xlabel("entropy threshold T (nats)")
        ax.set_ylabel("tokens/s")
        ax.set_title(f"early_exit:{n}, batch {b}")
        ax.legend(fontsize=6)
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
