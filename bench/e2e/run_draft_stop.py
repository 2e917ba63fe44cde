#!/usr/bin/env python
"""Speculative decoding gated by System 1's uncertainty (``draft_stop``) on CPU: tokens/s, accepted
tokens per drafted token and wasted draft tokens for fixed K, adaptive K and draft_stop thresholds,
against ``large`` and HF assisted generation measured in the same run (see bench/e2e/README.md).

    python bench/e2e/run_draft_stop.py --early-exit 4 10 18 --batch-sizes 1 4 --tag cpu_smollm2

Every engine contender decodes the same chat-templated prompts greedily for exactly --max-new-tokens
tokens (EOS ignored), one untimed warm-up call, the median of --runs timed calls reported; the
contenders of one (N, batch) are run interleaved, round by round, so load from other processes hits
all of them alike. The draft/target cost ratio (one draft step / one large step, from method=small
and method=large) is measured in the same run and fed to ``recommend_draft_stop`` on an
oracle(always) trace of the same prompts; the recommended rule is measured too.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

from fsgen_engine import Engine, MethodOptions
from fsgen_engine.analysis.samples import sample_from_trace
from fsgen_engine.analysis.uncertainty import recommend_draft_stop
from fsgen_engine.benchmark.configs import default_model_path
from fsgen_engine.benchmark.harness import CHAT_PROMPTS
from fsgen_engine.benchmark.hf import HFGenerate, load_hf_model


def contenders(args) -> list[tuple[str, dict]]:
    out = [("large", dict(method="large")), ("small", dict(method="small"))]
    for k in args.fixed_k:
        out.append((f"spec K={k}", dict(method="speculative", options=MethodOptions(num_draft_tokens=k))))
    out.append((f"spec adaptive K={args.adaptive_k}",
                dict(method="speculative", options=MethodOptions(num_draft_tokens=args.adaptive_k, adaptive_draft=True))))
    for t in args.thresholds:
        out.append((f"spec K={args.gate_k} draft_stop=entropy:{t:g}", dict(
            method="speculative", options=MethodOptions(num_draft_tokens=args.gate_k, draft_stop=f"entropy:{t:g}"))))
    return out


def stats_of(outs) -> dict:
    s = [o.stats for o in outs]
    drafted = sum(x.draft_tokens for x in s)
    return {"tokens": sum(x.total_tokens for x in s), "rounds": sum(x.large_calls for x in s), "drafted": drafted,
            "accepted": sum(x.accepted_draft_tokens for x in s), "wasted": sum(x.wasted_draft_tokens for x in s),
            "draft_stops": sum(x.draft_stops for x in s),
            "accepted_per_drafted": (sum(x.accepted_draft_tokens for x in s) / drafted) if drafted else None}


def measure(fns: dict, runs: int) -> dict:
    """Interleaved timing: warm-up each, then ``runs`` rounds over all contenders."""
    res = {k: {"secs": [], "out": None} for k in fns}
    for k, fn in fns.items():
        res[k]["out"] = fn()
    for _ in range(runs):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            res[k]["secs"].append(time.perf_counter() - t0)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--early-exit", nargs="+", type=int, default=[4, 10, 18])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--fixed-k", nargs="+", type=int, default=[2, 4, 6])
    ap.add_argument("--adaptive-k", type=int, default=4)
    ap.add_argument("--gate-k", type=int, default=6)
    ap.add_argument("--thresholds", nargs="+", type=float, default=[0.25, 0.5, 1.0, 2.0])
    ap.add_argument("--results-dir", default="bench/results")
    ap.add_argument("--tag", default="cpu_smollm2")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    path = str(default_model_path())
    hf, tok = load_hf_model(path, dtype=torch.float32, device="cpu")
    doc = {"env": {"device": "cpu", "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                   "loadavg_start": os.getloadavg(), "model": os.path.basename(path),
                   "command": " ".join(sys.argv)}, "settings": vars(args), "rows": []}
    for n in args.early_exit:
        eng = Engine(path, f"early_exit:{n}", device="cpu", max_batch=8, kv_memory="1GiB")
        prompts = [eng.tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                     tokenize=True) for p in CHAT_PROMPTS]
        prompts = [list(p["input_ids"] if hasattr(p, "keys") else p) for p in prompts]
        # draft_stop recommendation from an oracle(always) trace: every token labelled
        orc = eng.generate(prompts[:4], method="oracle", router="always", max_new_tokens=args.max_new_tokens,
                           ignore_eos=True, progress=False)
        samples = [sample_from_trace(o.to_dict()) for o in orc]
        for b in args.batch_sizes:
            ps = prompts[:b]
            conts = contenders(args)
            fns = {name: (lambda kw=kw: eng.generate(ps, max_new_tokens=args.max_new_tokens, ignore_eos=True,
                                                     progress=False, **kw)) for name, kw in conts}
            hfa = HFGenerate(hf, assistant_early_exit=n)
            fns["hf-assisted"] = lambda: hfa(ps, args.max_new_tokens)
            res = measure(fns, args.runs)
            t_large = statistics.median(res["large"]["secs"])
            t_small = statistics.median(res["small"]["secs"])
            ratio = t_small / t_large
            rec = recommend_draft_stop(samples, args.gate_k, ratio)
            extra = {}
            if rec.rule:
                kw = dict(method="speculative", options=MethodOptions(num_draft_tokens=args.gate_k, draft_stop=rec.rule))
                extra[f"spec K={args.gate_k} draft_stop={rec.rule} (recommended)"] = (
                    lambda kw=kw: eng.generate(ps, max_new_tokens=args.max_new_tokens, ignore_eos=True, progress=False,
                                               **kw))
                res.update(measure(extra, args.runs))
            for name, r in res.items():
                med = statistics.median(r["secs"])
                ntok = b * args.max_new_tokens
                row = {"early_exit": n, "batch": b, "contender": name, "tokens_per_s": ntok / med,
                       "tokens_per_s_runs": [ntok / s for s in r["secs"]], "seconds_median": med,
                       "x_large": t_large / med}
                if name not in ("hf-assisted",):
                    row.update(stats_of(r["out"]))
                if name == "large":
                    row["draft_cost_ratio"] = ratio
                    row["recommendation"] = rec.line()
                doc["rows"].append(row)
                print(f"N={n:2d} B={b} {name:42s} {row['tokens_per_s']:7.1f} tok/s x_large={row['x_large']:.2f} "
                      f"acc/draft={row.get('accepted_per_drafted')} wasted={row.get('wasted')}", flush=True)
            print(f"N={n} B={b} draft/target cost {ratio:.3f}; {rec.line()}", flush=True)
            doc["env"]["loadavg_end"] = os.getloadavg()
            save(doc, args)   # after every (N, batch): a partial run keeps what it measured
        del eng
    return 0


def save(doc: dict, args) -> None:
    os.makedirs(args.results_dir, exist_ok=True)
    stem = os.path.join(args.results_dir, f"draft_stop_{args.tag}")
    with open(stem + ".json", "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {stem}.json", flush=True)


if __name__ == "__main__":
    sys.exit(main())
