"""Turn a pytest-benchmark JSON of bench/kernels into a markdown report: one table per op with
backend, shape, dtype, median time, GB/s and the speed-up of every backend over the eager
baselines measured in the same run, plus a check of the fused-op target (C++/CUDA at least
``--target``x faster than the eager reference at B=16, V=151936, float32).

Usage (from the repository root)::

    pytest bench/kernels --benchmark-only --benchmark-json=bench/results/kernels_cpu.json
    python bench/summarize_kernels.py bench/results/kernels_cpu.json -o bench/results/kernels_cpu.md \\
        --probe-env --meta "command=pytest bench/kernels ..."

``--meta KEY=VALUE`` (repeatable) adds lines to the environment section; ``--probe-env`` adds the
torch/triton versions, the GPU name and the CPU model of the machine running this script (use it
only when summarising on the machine that ran the benchmarks).
"""
from __future__ import annotations

import argparse
import json
import subprocess
from collections import defaultdict

# Baselines the other rows are compared against (t_baseline / t_backend, >1 = faster than it).
BASELINES = ("eager", "torch_eager_fp32", "reference")
# Keys of extra_info that are measurements or labels, not part of the shape.
NOT_SHAPE = {"bytes", "GB/s", "impl", "backend", "device"}
FUSED_OPS = ("token_stats", "fuse_logits", "sample", "verify")
TARGET_SHAPE = {"B": 16, "V": 151936, "dtype": "float32"}
BACKEND_NOTES = {
    "cpu": "C++ (fsgen_engine._C)", "cuda": "CUDA (fsgen_engine._C)", "triton": "Triton",
    "eager": "torch eager reference (the definition; float64 for sample/verify)",
    "torch_eager_fp32": "plain-torch float32 baseline (topk + top-p, multinomial)",
    "compile": "torch.compile of the reference", "reference": "torch reference backend",
}


def _op(bench: dict) -> str:
    name = bench["name"].split("[")[0]
    return name[len("bench_"):] if name.startswith("bench_") else name


def _backend(bench: dict) -> str:
    info = bench.get("extra_info", {})
    return str(info.get("impl", info.get("backend", bench.get("params", {}).get("impl", "?"))))


def _shape(bench: dict) -> tuple:
    info = bench.get("extra_info", {})
    return tuple((k, str(info[k]).replace("torch.", "")) for k in info if k not in NOT_SHAPE)


def _fmt_time(sec: float) -> str:
    if sec >= 1:
        return f"{sec:.3f} s"
    if sec >= 1e-3:
        return f"{sec * 1e3:.3f} ms"
    return f"{sec * 1e6:.1f} us"


def _ratio(base: float | None, t: float) -> str:
    return "" if base is None else f"{base / t:.2f}x"


def op_tables(benchmarks: list[dict]) -> tuple[list[str], list[tuple]]:
    """Markdown lines of the per-op tables and the rows of the target check."""
    by_op: dict[str, list[dict]] = defaultdict(list)
    for b in benchmarks:
        by_op[_op(b)].append(b)
    lines, checks = [], []
    for op in sorted(by_op, key=lambda o: (FUSED_OPS + (o,)).index(o)):
        rows = by_op[op]
        medians = {(_shape(b), _backend(b)): b["stats"]["median"] for b in rows}
        bases = [x for x in BASELINES if any(k[1] == x for k in medians)]
        shape_keys = [k for k, _ in _shape(rows[0])]
        lines += [f"## {op}", ""]
        head = ["backend", *shape_keys, "median", "GB/s", "rounds"] + [f"speed-up vs {x}" for x in bases]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        order = {k: i for i, k in enumerate(["cuda", "cpu", "triton", "compile", *BASELINES])}
        for b in sorted(rows, key=lambda b: (_shape(b), order.get(_backend(b), 99))):
            shape, be, t = _shape(b), _backend(b), b["stats"]["median"]
            gbs = b.get("extra_info", {}).get("GB/s")
            cells = [be, *[v for _, v in shape], _fmt_time(t), "" if gbs is None else f"{gbs:.2f}",
                     str(b["stats"]["rounds"])]
            cells += ["" if be == x else _ratio(medians.get((shape, x)), t) for x in bases]
            lines.append("| " + " | ".join(cells) + " |")
            sd = dict(shape)
            if op in FUSED_OPS and be in ("cpu", "cuda") and all(sd.get(k) == str(v) for k, v in TARGET_SHAPE.items()):
                checks.append((op, be, t, {x: medians.get((shape, x)) for x in bases}))
        lines.append("")
    return lines, checks


def environment(data: dict, metas: list[str], probe: bool) -> list[str]:
    mi, ci = data.get("machine_info", {}), data.get("commit_info", {})
    cpu = mi.get("cpu", {})
    out = [f"- date (benchmark run): {data.get('datetime', '?')}",
           f"- git commit: {ci.get('id', '?')}{' (dirty working tree)' if ci.get('dirty') else ''}",
           f"- machine: {mi.get('node', '?')}, {mi.get('system', '?')} {mi.get('release', '?')}, "
           f"CPU {cpu.get('brand_raw', '?')} ({cpu.get('count', '?')} logical cores)",
           f"- python {mi.get('python_version', '?')}, pytest-benchmark {data.get('version', '?')}"]
    if probe:
        out += _probe()
    for m in metas:
        key, sep, value = m.partition("=")
        # KEY=VALUE -> "- KEY: VALUE"; anything else (no '=' or a key with spaces) is kept verbatim.
        out.append(f"- {key}: {value}" if sep and key and " " not in key else f"- {m}")
    return out


def _probe() -> list[str]:
    out = []
    try:
        import torch
        out.append(f"- torch {torch.__version__} (probed where this summary was written)")
        if torch.cuda.is_available():
            out.append(f"- GPU: {torch.cuda.get_device_name(0)}")
    except ImportError:
        pass
    try:
        import triton
        out.append(f"- triton {triton.__version__}")
    except ImportError:
        pass
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Model name")), None)
        if model:
            out.append(f"- lscpu model name: {model}")
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def summarize(data: dict, metas: list[str] = (), probe: bool = False, target: float = 2.0,
              title: str = "Kernel micro-benchmarks") -> str:
    tables, checks = op_tables(data.get("benchmarks", []))
    lines = [f"# {title}", "", *environment(data, list(metas), probe), "",
             "Median wall time per call (host-synchronised). GB/s = bytes the op must move (see each "
             "bench_*.py) / median. `speed-up vs X` = median(X) / median(row), measured in the same run "
             "(> 1: the row is faster).", "", "Backends: " + "; ".join(
                 f"`{k}` = {v}" for k, v in BACKEND_NOTES.items()), "",
             f"## Target check: fused ops, B=16, V=151936, float32, native backend >= {target:g}x faster than eager",
             ""]
    if checks:
        bases = sorted({x for *_, m in checks for x in m if m[x] is not None}, key=BASELINES.index)
        head = ["op", "backend", "median"] + [f"vs {x}" for x in bases] + [f"meets {target:g}x (vs eager)"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for op, be, t, m in checks:
            ok = "n/a" if m.get("eager") is None else ("yes" if m["eager"] / t >= target else "NO")
            lines.append("| " + " | ".join([op, be, _fmt_time(t), *[_ratio(m.get(x), t) for x in bases], ok]) + " |")
    else:
        lines.append("No native-backend run at that shape in this file.")
    lines += ["", *tables]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", help="pytest-benchmark --benchmark-json output")
    ap.add_argument("-o", "--output", help="markdown file to write (default: stdout)")
    ap.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="extra environment line")
    ap.add_argument("--probe-env", action="store_true", help="add torch/triton/GPU/CPU model of this machine")
    ap.add_argument("--target", type=float, default=2.0, help="required speed-up over eager (default 2)")
    ap.add_argument("--title", default="Kernel micro-benchmarks")
    args = ap.parse_args(argv)
    with open(args.json) as f:
        data = json.load(f)
    text = summarize(data, args.meta, args.probe_env, args.target, args.title)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
