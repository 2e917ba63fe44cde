"""What ``fsgen demo`` prints and writes: the speed / collaboration table, generations, traces, plots."""
from __future__ import annotations

import os

TABLE_COLUMNS = ["method", "router", "tokens", "seconds", "tokens/s", "x HF", "large-call frac", "CF",
                 "accept len"]


def summarize(cfg, outputs: dict, timings: dict, hf_row: dict | None, device: str, dtype: str) -> dict:
    """One row per method: totals over the prompts, tokens/s over the batch's wall time."""
    rows = []
    for label, outs in outputs.items():
        tot = sum(o.stats.total_tokens for o in outs)
        calls = sum(o.stats.large_calls for o in outs)
        mism = sum(o.stats.mismatches for o in outs)
        acc = sum(o.stats.accepted_draft_tokens for o in outs)
        secs = timings[label]
        tps = tot / secs if secs > 0 else float("nan")
        spec = outs[0].method == "speculative" or label.startswith("speculative")
        rows.append(dict(
            method=label, router=outs[0].router or "-", total_tokens=tot, large_calls=calls, mismatches=mism,
            draft_tokens=sum(o.stats.draft_tokens for o in outs), accepted_draft_tokens=acc,
            seconds=secs, tokens_per_s=tps,
            speedup_vs_hf=(tps / hf_row["tokens_per_s"]) if hf_row else None,
            large_call_fraction=calls / tot if tot else 0.0,
            collaboration_frequency=mism / tot if tot else 0.0,
            acceptance_length=(acc / calls + 1.0) if spec and calls else None,
        ))
    hf = None
    if hf_row:
        hf = {k: v for k, v in hf_row.items() if k != "texts"}
    return dict(large=cfg.large, small=f"early_exit:{cfg.early_exit}", device=device, dtype=dtype,
                prompts=cfg.prompts, max_new_tokens=cfg.max_new_tokens, quick=cfg.quick, hf_baseline=hf,
                rows=rows, hf_texts=hf_row["texts"] if hf_row else None)


def _cells(r: dict) -> list:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    return [r["method"], r["router"], r["total_tokens"], f(r["seconds"], ".2f"), f(r["tokens_per_s"], ".1f"),
            f(r["speedup_vs_hf"], ".2f"), f(r["large_call_fraction"], ".2f"), f(r["collaboration_frequency"], ".3f"),
            f(r["acceptance_length"], ".2f")]


def table_rows(summary: dict) -> list[list]:
    rows = []
    if summary["hf_baseline"]:
        h = summary["hf_baseline"]
        rows.append(["HF generate (baseline)", "-", h["tokens"], f"{h['seconds']:.2f}", f"{h['tokens_per_s']:.1f}",
                     "1.00", "1.00", "-", "-"])
    return rows + [_cells(r) for r in summary["rows"]]


def print_generations(console, prompts, outputs: dict, hf_row: dict | None, methods) -> None:
    from rich.table import Table

    about = {m.label: m.about for m in methods}
    t = Table(title=f"Generations for prompt 1: {prompts[0]!r}", show_lines=True, expand=True)
    t.add_column("method", style="bold cyan", no_wrap=True, max_width=22)
    t.add_column("output")
    if hf_row:
        t.add_row("HF generate", _clip(hf_row["texts"][0]))
    for label, outs in outputs.items():
        t.add_row(f"{label}\n[dim]{about.get(label, '')}[/]", _clip(outs[0].text))
    from .console import print_table as _print

    _print(console, t, max_width=160)  # long outputs wrap inside their cell


def _clip(text: str, n: int = 260) -> str:
    from rich.markup import escape

    text = " ".join(text.split())
    return escape(text if len(text) <= n else text[: n - 1] + "…")


def print_table(console, summary: dict) -> None:
    from rich.table import Table

    t = Table(title=f"Speed and collaboration ({summary['device']}, {summary['dtype']}, "
                    f"{len(summary['prompts'])} prompts x {summary['max_new_tokens']} new tokens max)")
    for c in TABLE_COLUMNS:
        t.add_column(c, justify="left" if c in ("method", "router") else "right")
    for row in table_rows(summary):
        t.add_row(*map(str, row))
    from .console import print_table as _print

    _print(console, t)
    console.print("[dim]tokens/s = emitted tokens of all prompts / wall time of the batch; x HF = ratio to HF "
                  "transformers generate in this run; large-call frac = large-model calls / tokens "
                  "(speculative: verification rounds); CF = collaboration frequency = mismatches / tokens; "
                  "accept len = accepted drafts per verification round + 1[/]")


def write_outputs(cfg, outputs: dict, summary: dict, console) -> list[str]:
    """traces.jsonl, speed table (md/csv) + plot, and the FS-GEN analyses' tables + plots."""
    from fsgen_engine.outputs import write_traces

    out = cfg.out
    traces = os.path.join(out, "traces.jsonl")
    write_traces(traces, [o for outs in outputs.values() for o in outs])
    paths = [traces]
    print_table(console, summary)
    paths += _speed_plot(summary, out)
    paths += _analyses(traces, out, outputs, console)
    return paths


def _speed_plot(summary: dict, out: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    stem = os.path.join(out, "speed")
    rows = table_rows(summary)
    with open(stem + ".md", "w", encoding="utf-8") as f:
        f.write("# Speed and collaboration\n\n| " + " | ".join(TABLE_COLUMNS) + " |\n|" + "---|" * len(TABLE_COLUMNS)
                + "\n" + "".join("| " + " | ".join(map(str, r)) + " |\n" for r in rows))
    labels = [str(r[0]) for r in rows]
    tps = [float(r[4]) for r in rows]
    frac = [float(r[6]) if r[6] != "-" else 0.0 for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = ["grey" if lab.startswith("HF") else "tab:blue" for lab in labels]
    bars = a1.barh(labels, tps, color=colors)
    a1.bar_label(bars, fmt="%.1f", fontsize=7)
    a1.invert_yaxis()
    a1.set_xlabel("tokens/s (all prompts of the batch)")
    a1.set_title("Decoding speed (grey: HF transformers baseline)")
    bars = a2.barh(labels, frac, color="tab:orange")
    a2.bar_label(bars, fmt="%.2f", fontsize=7)
    a2.invert_yaxis()
    a2.set_xlim(0, 1.1)
    a2.set_xlabel("large-model calls / tokens")
    a2.set_title("Large-call fraction")
    fig.tight_layout()
    fig.savefig(stem + ".png", dpi=130)
    plt.close(fig)
    return [stem + ".md", stem + ".png"]


def _analyses(traces: str, out: str, outputs: dict, console) -> list[str]:
    """Collaboration (all methods) and position / uncertainty (oracle-style methods under `always`)."""
    try:
        from fsgen_engine.analysis.collab import analyze_collab
        from fsgen_engine.analysis.position import analyze_position
        from fsgen_engine.analysis.samples import load_samples
        from fsgen_engine.analysis.uncertainty import analyze_uncertainty
    except ImportError:
        return _fallback_collab_plot(outputs, out)
    samples = load_samples([traces])
    paths = []
    analyze_collab(samples, out, by="label", echo=False)
    paths += [os.path.join(out, f"collab.{e}") for e in ("md", "csv", "png")]
    routed = [s for s in samples if s.meta.get("router") == "always" and s.meta.get("method") in ("oracle", "contrastive")]
    if routed:
        analyze_position(routed, out, by="label", echo=False)
        paths += [os.path.join(out, f"position.{e}") for e in ("md", "csv", "png")]
        res = analyze_uncertainty(routed, out, echo=False)
        paths += [os.path.join(out, f"uncertainty.{e}") for e in ("md", "csv", "png")]
        try:
            console.print(f"[dim]uncertainty: {res.recommendation()}[/]")
        except Exception:
            pass
    return [p for p in paths if os.path.exists(p)]


def _fallback_collab_plot(outputs: dict, out: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    labels, cf = [], []
    for label, outs in outputs.items():
        tot = sum(o.stats.total_tokens for o in outs)
        labels.append(label)
        cf.append(sum(o.stats.mismatches for o in outs) / tot if tot else 0.0)
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(labels, cf)
    ax.set_ylabel("mismatches / tokens")
    ax.set_title("Collaboration frequency")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    path = os.path.join(out, "collab.png")
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return [path]
