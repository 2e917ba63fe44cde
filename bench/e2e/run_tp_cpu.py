"""Tensor parallelism on the CPU: TP=2 over gloo against TP=1 on the embedded SmolLM2-135M, and the peak
memory of loading one rank's shard against the whole model.

    python bench/e2e/run_tp_cpu.py --tag cpu_smollm2     # -> bench/results/tp_<tag>.json / .md

Per method (``large``; ``speculative`` with an ``early_exit:10`` draft on the large model's shards, and
with the whole SmolLM2 as a TP=1 System 1 beside the TP=2 large): tokens/s at TP=1 and TP=2 (median of
``--runs``), the ratio, and rank 0's share of step time spent in communication (the per-step broadcast,
the all-reduces and the logits all-gather, timed around each call: the rest is compute). A CPU with two
cores cannot show a TP speed-up (the ranks share the cores the TP=1 run had to itself); what this
measures is the communication cost TP adds per step, which a GPU node's links shrink but never remove.

Peak RSS: a fresh process loads the model (safetensors folder converted from the GGUF) whole or as rank
0's shard of 2 or 3 and reports its peak resident memory (``VmHWM``) above its baseline after imports.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, there was a little",
           "The three laws of motion are"]


def _timed_comm():
    """Patch the TP collectives to add their wall time to a counter (rank 0 only reads it)."""
    from fsgen_engine.models import tensor_parallel as T
    from fsgen_engine.tp import runtime as R

    acc = {"s": 0.0}

    def wrap(fn):
        def inner(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc["s"] += time.perf_counter() - t
        return inner

    T.TPShard.all_reduce = wrap(T.TPShard.all_reduce)
    T.TPShard.gather_vocab = wrap(T.TPShard.gather_vocab)
    R.TPRuntime.send_forward = wrap(R.TPRuntime.send_forward)
    return acc


def run_speed(folder: str, runs: int, max_new: int, batch: int) -> list[dict]:
    from fsgen_engine import Engine, MethodOptions

    acc = _timed_comm()
    prompts = (PROMPTS * batch)[:batch]
    # (method, System 1, its TP, TP, large-side logits: "merge" = the ranks' (max, id) pairs; "gather" =
    # the [B, n, V] all-gather, as sampling and fused targets need; FSGEN_TP_LOGITS forces one per case)
    cases = [("large", "early_exit:10", None, 1, "-"), ("large", "early_exit:10", None, 2, "merge"),
             ("large", "early_exit:10", None, 2, "gather"),
             ("speculative", "early_exit:10", None, 1, "-"), ("speculative", "early_exit:10", 2, 2, "merge"),
             ("speculative", "early_exit:10", 2, 2, "gather"), ("speculative", folder, 1, 2, "merge")]
    rows = []
    for method, small, small_tp, tp, path in cases:
        os.environ["FSGEN_TP_LOGITS"] = "gather" if path == "gather" else "merge"   # read by rank 0 each step
        kw = dict(tensor_parallel=tp, small_tensor_parallel=small_tp or (tp if small.startswith("early_exit") else 1))
        with Engine(folder, small, device="cpu", dtype="float32", max_batch=batch, **kw) as e:
            opts = MethodOptions(num_draft_tokens=4)
            e.generate(prompts[:1], method=method, options=opts, max_new_tokens=4, progress=False)  # warm-up
            walls, comm = [], []
            for _ in range(runs):
                acc["s"] = 0.0
                t = time.perf_counter()
                outs = e.generate(prompts, method=method, options=opts, max_new_tokens=max_new, ignore_eos=True,
                                  progress=False)
                walls.append(time.perf_counter() - t)
                comm.append(acc["s"])
            tokens = sum(len(o.token_ids) for o in outs)
            i = walls.index(statistics.median(walls)) if runs % 2 else 0
            rows.append({"method": method, "small": "SmolLM2 (whole)" if small == folder else small, "tp": tp,
                         "large_logits": path,
                         "small_tp": kw["small_tensor_parallel"], "batch": batch, "tokens": tokens,
                         "tokens_per_s": tokens / statistics.median(walls),
                         "comm_share": comm[i] / walls[i] if tp > 1 else 0.0,
                         "tokens_per_large_call": tokens / max(1, sum(o.stats.large_calls for o in outs))})
            print(json.dumps(rows[-1]), flush=True)
    os.environ.pop("FSGEN_TP_LOGITS", None)
    base = {(r["method"], r["small"]): r["tokens_per_s"] for r in rows if r["tp"] == 1}
    for r in rows:
        b = base.get((r["method"], r["small"]))
        r["ratio_vs_tp1"] = r["tokens_per_s"] / b if b else None
    return rows


_RSS_CHILD = r'''
import json, sys, torch
from fsgen_engine.models import load_model
from fsgen_engine.models.tensor_parallel import TPShard
import transformers, safetensors  # imports first: the baseline counts them

def mib(key):  # VmHWM: this process's peak RSS (per address space, so not inherited across exec)
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024

base = mib("VmHWM")
tp = None if sys.argv[2] == "whole" else TPShard(0, int(sys.argv[2]))
m, _ = load_model(sys.argv[1], tokenizer=False, tp=tp)
# the whole model's weights stay memory-mapped (read on first use): touch every weight, as a forward would
ts = [t for t in m.weights.values() if isinstance(t, torch.Tensor)]
ts += [t for L in m.weights["layers"] for t in L.values() if isinstance(t, torch.Tensor)]
float(sum(t.float().sum() for t in ts))
print(json.dumps({"baseline_mib": base, "peak_above_baseline_mib": mib("VmHWM") - base,
                  "rss_after_use_mib": mib("VmRSS") - base, "params": m.num_parameters()}))
'''


def run_rss(folder: str) -> list[dict]:
    out = []
    for how in ("whole", "2", "3"):   # SmolLM2: 9 heads / 3 KV heads split over 2 or 3 ranks, not 4
        p = subprocess.run([sys.executable, "-c", _RSS_CHILD, folder, how], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
        row = json.loads(p.stdout.strip().splitlines()[-1])
        row["load"] = "whole model" if how == "whole" else f"rank 0 of {how}"
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


def smollm2_folder(tmp: str) -> str:
    """The embedded GGUF as an fp32 safetensors folder (what a TP rank reads block by block)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fsgen_engine.benchmark.configs import default_model_path

    gguf = default_model_path()
    d, name = os.path.split(gguf)
    from safetensors.torch import save_file

    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype="float32")
    model.config.__dict__.pop("quantization_config", None)   # dequantised already: a plain fp32 checkpoint
    model.config.save_pretrained(tmp)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)   # HF's layout of a tied checkpoint: the embedding only
    save_file(sd, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
    AutoTokenizer.from_pretrained(d, gguf_file=name).save_pretrained(tmp)
    return tmp


def render_md(doc: dict) -> str:
    m = doc["machine"]
    lines = [f"# Tensor parallelism on the CPU: SmolLM2-135M, TP=2 over gloo vs TP=1", "",
             f"Measured {doc.get('measured', '?')} at commit `{doc.get('commit', '?')}`, torch {m['torch']}, "
             f"`python bench/e2e/run_tp_cpu.py --runs {doc['settings']['runs']} --max-new-tokens "
             f"{doc['settings']['max_new_tokens']}`; {m['cpu_count']} cores, load average {doc.get('load', '?')} "
             f"at the start. " + " ".join(doc["notes"]), "",
             "| method | System 1 | TP | System 1 TP | large-side logits | tokens/s | vs TP=1 | comm share |",
             "|---|---|---|---|---|---|---|---|"]
    for r in doc["speed"]:
        ratio = "-" if r["ratio_vs_tp1"] is None else format(r["ratio_vs_tp1"], ".2f")
        lines.append(f"| {r['method']} | {r['small']} | {r['tp']} | {r['small_tp']} | {r['large_logits']} | "
                     f"{r['tokens_per_s']:.1f} | {ratio} | {r['comm_share']:.0%} |")
    lines += ["", "| load | peak RSS above baseline (MiB) | RSS after touching every weight (MiB) | parameters |",
              "|---|---|---|---|"]
    lines += [f"| {r['load']} | {r['peak_above_baseline_mib']:.0f} | {r['rss_after_use_mib']:.0f} | {r['params']:,} |"
              for r in doc["peak_rss"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--tag", default="cpu_smollm2")
    ap.add_argument("--results-dir", default=str(ROOT / "bench/results"))
    args = ap.parse_args()
    import torch

    with tempfile.TemporaryDirectory(prefix="fsgen_tp_") as tmp:
        folder = smollm2_folder(tmp)
        rss = run_rss(folder)
        speed = run_speed(folder, args.runs, args.max_new_tokens, args.batch)
    doc = {"measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "load": round(os.getloadavg()[0], 2),
           "commit": subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True,
                                    cwd=ROOT).stdout.strip(),
           "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                       "torch_threads": torch.get_num_threads()},
           "settings": vars(args), "speed": speed, "peak_rss": rss,
           "notes": ["2-core machine shared with other work: ratios are within-run; TP=2 cannot be faster than "
                     "TP=1 here (both ranks share the cores), the figure of interest is comm_share"]}
    out = Path(args.results_dir) / f"tp_{args.tag}.json"
    out.write_text(json.dumps(doc, indent=1))
    out.with_suffix(".md").write_text(render_md(doc))
    print(render_md(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
