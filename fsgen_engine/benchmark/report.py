"""Result files of ``fsgen bench``: JSON (with the environment), a markdown table and a plot."""
from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

COLUMNS = [
    ("pair", "pair"), ("batch", "batch"), ("contender", "contender"), ("tokens_per_s", "tok/s"),
    ("ratio_vs_hf", "x HF"), ("ratio_vs_hf_assisted", "x HF assisted"), ("acceptance_length", "accept len"),
    ("large_call_fraction", "large-call frac"), ("collaboration_frequency", "CF"),
    ("bandwidth_gbs", "GB/s"), ("bandwidth_share", "of copy BW"),
]


def _version(mod: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(mod)
    except Exception:
        return None


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str, command: str | None = None) -> dict:
    """Device name, library versions, git commit and the exact command line."""
    import torch

    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True,
                                    timeout=10).stdout.strip())
    except Exception:
        commit, dirty = None, None
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        name = f"CPU: {_cpu_name()} ({os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads)"
    return {
        "device": device,
        "device_name": name,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "transformers": _version("transformers"),
        "fsgen_engine": _version("fsgen_engine"),
        "git_commit": commit,
        "git_dirty": dirty,
        "command": command or " ".join(shlex.quote(a) for a in ([os.path.basename(sys.argv[0])] + sys.argv[1:])),
        "platform": platform.platform(),
        # other work on the machine skews CPU timings: the 1/5/15-minute load average at the end
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _fmt(v, key: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:
            return "error"
        if key == "bandwidth_share":
            return f"{100 * v:.1f}%"
        return f"{v:.2f}" if key != "tokens_per_s" else f"{v:.1f}"
    return str(v)


def markdown(doc: dict) -> str:
    env, s = doc["env"], doc["settings"]
    lines = [
        "# fsgen bench: end-to-end tokens/s",
        "",
        f"- device: {env['device_name']} ({s['device_resolved']}, {s['dtype_resolved']}); "
        f"torch {env['torch']}, triton {env['triton']}, transformers {env['transformers']}",
        f"- commit {env['git_commit']}{' (dirty tree)' if env['git_dirty'] else ''}; command: `{env['command']}`",
        f"- {s['max_new_tokens']} new tokens per prompt (EOS ignored), greedy unless the method samples; "
        f"{s['warmup']} short warm-up call (4 tokens) excluded, median of {s['runs']} runs; tok/s counts every prompt of the batch",
        f"- measured copy bandwidth: {doc['copy_bandwidth_gbs']:.1f} GB/s ({doc['copy_bandwidth_note']})",
        "- accept len = accepted drafts per verification round + 1; large-call frac = large-model calls / tokens; "
        "CF = mismatches / tokens; GB/s = (weights + KV) bytes read per step x steps / s",
        "",
        "| " + " | ".join(h for _, h in COLUMNS) + " | note |",
        "|" + "---|" * (len(COLUMNS) + 1),
    ]
    for r in doc["rows"]:
        note = r.get("error") or r.get("note") or ""
        lines.append("| " + " | ".join(_fmt(r.get(k), k) for k, _ in COLUMNS) + f" | {note} |")
    if doc.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in doc["notes"]]
    return "\n".join(lines) + "\n"


def plot(doc: dict, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows = [r for r in doc["rows"] if r["tokens_per_s"] == r["tokens_per_s"]]
    groups = sorted({(r["pair"], r["batch"]) for r in rows})
    contenders = list(dict.fromkeys(r["contender"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.2 * len(groups) * max(1, len(contenders)) / 3 + 4), 4.8))
    w = 0.8 / max(1, len(contenders))
    for j, c in enumerate(contenders):
        xs, ys = [], []
        for i, g in enumerate(groups):
            v = next((r["tokens_per_s"] for r in rows if (r["pair"], r["batch"]) == g and r["contender"] == c), None)
            if v is not None:
                xs.append(i + (j - (len(contenders) - 1) / 2) * w)
                ys.append(v)
        bars = ax.bar(xs, ys, w, label=c)
        ax.bar_label(bars, fmt="%.0f", fontsize=6)
    ax.set_xticks(range(len(groups)), [f"{p}\nbatch {b}" for p, b in groups], fontsize=8)
    ax.set_ylabel("tokens/s (all prompts of the batch)")
    ax.set_title(f"End-to-end decoding speed on {doc['env']['device_name'][:60]}", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def write_results(doc: dict, results_dir: str, tag: str) -> list[str]:
    """Write ``e2e_<tag>.json``, ``.md`` and ``.png`` under ``results_dir``; returns the paths."""
    os.makedirs(results_dir, exist_ok=True)
    stem = os.path.join(results_dir, f"e2e_{tag}")
    with open(stem + ".json", "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, allow_nan=True)
    with open(stem + ".md", "w", encoding="utf-8") as f:
        f.write(markdown(doc))
    paths = [stem + ".json", stem + ".md"]
    try:
        paths.append(plot(doc, stem + ".png"))
    except Exception as exc:  # the numbers matter more than the figure
        print(f"[bench] plot failed: {exc}", file=sys.stderr)
    return paths
