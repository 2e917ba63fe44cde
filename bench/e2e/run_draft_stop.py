#!/usr/bin/env python
"""Speculative decoding gated by System 1's uncertainty (``draft_stop``) on CPU: tokens/s, accepted
tokens per drafted token and wasted draft tokens for fixed K, adaptive K and draft_stop thresholds
(with and without the back-off after a first-draft fire), against ``large`` and HF assisted
generation measured in the same run (see bench/e2e/README.md).

    python bench/e2e/run_draft_stop.py --early-exit 4 10 18 --batch-sizes 1 4 --tag cpu_smollm2

Every engine contender decodes the same chat-templated prompts greedily for exactly --max-new-tokens
tokens (EOS ignored); one short untimed warm-up call each (--warmup-tokens), then --runs timed rounds
over all contenders, interleaved, so load from other processes hits all of them alike; the median is
reported. Every engine row's tokens are checked against ``large``'s (greedy speculative decoding must
equal it). The draft/target cost ratio (one draft step / one large step, from method=small and
method=large in a short pre-pass) is fed to ``recommend_draft_stop`` on an oracle(always) trace of
the same prompts; the recommended rule is measured in the interleaved rounds too.

Torch runs --threads threads (default 1): on the shared 2-core machine two OpenMP threads competing
with other jobs were 5-8x slower than one and far noisier.
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


def spec(name: str, kind: str, **opts) -> tuple[str, dict, dict]:
    """(row label, generate kwargs, row fields describing the contender)."""
    meta = {"kind": kind, "K": opts.get("num_draft_tokens"), "rule": opts.get("draft_stop"),
            "backoff": opts.get("draft_backoff", 8) if opts.get("draft_stop") else None}
    if meta["rule"] and meta["rule"].startswith("entropy:"):
        meta["threshold"] = float(meta["rule"].split(":")[1])
    return name, dict(method="speculative", options=MethodOptions(**opts)), meta


def contenders(args) -> list[tuple[str, dict, dict]]:
    out = [("large", dict(method="large"), {"kind": "large"}), ("small", dict(method="small"), {"kind": "small"})]
    out += [spec(f"spec K={k}", "fixed", num_draft_tokens=k) for k in args.fixed_k]
    out.append(spec(f"spec adaptive K={args.adaptive_k}", "adaptive", num_draft_tokens=args.adaptive_k,
                    adaptive_draft=True))
    for t in args.thresholds:
        out.append(spec(f"spec K={args.gate_k} draft_stop=entropy:{t:g}", "gate", num_draft_tokens=args.gate_k,
                        draft_stop=f"entropy:{t:g}"))
    for t in args.no_backoff_thresholds:
        out.append(spec(f"spec K={args.gate_k} draft_stop=entropy:{t:g} no back-off", "gate",
                        num_draft_tokens=args.gate_k,
                        draft_stop=f"entropy:{t:g}", draft_backoff=0))
    return out


def stats_of(outs) -> dict:
    s = [o.stats for o in outs]
    drafted = sum(x.draft_tokens for x in s)
    return {"tokens": sum(x.total_tokens for x in s), "rounds": sum(x.large_calls for x in s), "drafted": drafted,
            "accepted": sum(x.accepted_draft_tokens for x in s), "wasted": sum(x.wasted_draft_tokens for x in s),
            "draft_stops": sum(x.draft_stops for x in s),
            "accepted_per_drafted": (sum(x.accepted_draft_tokens for x in s) / drafted) if drafted else None}


def _before_eos(toks: list[int], eos: set[int]) -> int:
    """Index of the first EOS in ``toks`` (len(toks) if none)."""
    return next((i for i, t in enumerate(toks) if t in eos), len(toks))


def measure(fns: dict, warm: dict, runs: int) -> dict:
    """Warm-up each (``warm``: short calls), then ``runs`` interleaved rounds over all contenders;
    ``out``: the last timed call's result."""
    for fn in warm.values():
        fn()
    res = {k: {"secs": [], "out": None} for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            res[k]["out"] = fn()
            res[k]["secs"].append(time.perf_counter() - t0)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--early-exit", nargs="+", type=int, default=[4, 10, 18])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--warmup-tokens", type=int, default=4, help="tokens of each contender's untimed warm-up call")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: leave torch's default)")
    ap.add_argument("--fixed-k", nargs="+", type=int, default=[1, 2, 4])
    ap.add_argument("--adaptive-k", type=int, default=4)
    ap.add_argument("--gate-k", type=int, default=6)
    ap.add_argument("--thresholds", nargs="+", type=float, default=[0.1, 0.25, 0.5, 1.0, 2.0])
    ap.add_argument("--no-backoff-thresholds", nargs="*", type=float, default=[0.1, 0.5, 2.0],
                    help="also measure these thresholds with draft_backoff=0")
    ap.add_argument("--results-dir", default="bench/results")
    ap.add_argument("--tag", default="cpu_smollm2")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    path = str(default_model_path())
    hf, tok = load_hf_model(path, dtype=torch.float32, device="cpu")
    doc = {"env": {"device": "cpu", "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                   "loadavg_start": os.getloadavg(), "model": os.path.basename(path), "torch": torch.__version__,
                   "command": " ".join(sys.argv), "started": time.strftime("%Y-%m-%d %H:%M:%S")},
           "settings": vars(args), "rows": []}
    t_start = time.perf_counter()
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

            def call(kw, m=args.max_new_tokens):
                return eng.generate(ps, max_new_tokens=m, ignore_eos=True, progress=False, **kw)

            # pre-pass: the draft/target cost ratio for the recommendation (large and small, 2 calls each)
            pre = measure({"large": lambda: call(dict(method="large")), "small": lambda: call(dict(method="small"))},
                          {}, 2)
            ratio_pre = min(pre["small"]["secs"]) / min(pre["large"]["secs"])
            rec = recommend_draft_stop(samples, args.gate_k, ratio_pre)
            conts = contenders(args)
            if rec.rule:
                conts.append(spec(f"spec K={args.gate_k} draft_stop={rec.rule} (recommended)", "recommended",
                                  num_draft_tokens=args.gate_k, draft_stop=rec.rule))
            meta = {name: m for name, _, m in conts}
            fns = {name: (lambda kw=kw: call(kw)) for name, kw, _ in conts}
            warm = {name: (lambda kw=kw: call(kw, args.warmup_tokens)) for name, kw, _ in conts}
            hfa = HFGenerate(hf, assistant_early_exit=n)
            fns["hf-assisted"] = lambda: hfa(ps, args.max_new_tokens)
            warm["hf-assisted"] = lambda: hfa(ps, args.warmup_tokens)
            meta["hf-assisted"] = {"kind": "hf-assisted"}
            res = measure(fns, warm, args.runs)
            t_large = statistics.median(res["large"]["secs"])
            ratio = statistics.median(res["small"]["secs"]) / t_large
            ref = [o.token_ids for o in res["large"]["out"]]
            eos = {eng.tokenizer.eos_token_id} - {None}
            for name, r in res.items():
                med = statistics.median(r["secs"])
                ntok = b * args.max_new_tokens
                row = {"early_exit": n, "batch": b, "contender": name, **meta[name], "tokens_per_s": ntok / med,
                       "tokens_per_s_runs": [ntok / s for s in r["secs"]], "seconds_median": med,
                       "x_large": t_large / med}
                if name == "hf-assisted":   # min_new_tokens masks HF's EOS: compare up to large's first EOS
                    row["equal_large"] = all(list(h)[:_before_eos(e, eos)] == e[:_before_eos(e, eos)]
                                             for h, e in zip(r["out"][0], ref))
                    row["note"] = ("tokens compared with large's up to its first EOS (HF's min_new_tokens masks EOS) "
                                   + hfa.note).strip()
                else:
                    row.update(stats_of(r["out"]))
                    row["equal_large"] = [o.token_ids for o in r["out"]] == ref
                if name == "large":
                    row.update(draft_cost_ratio=ratio, draft_cost_ratio_prepass=ratio_pre,
                               recommendation=rec.line())
                doc["rows"].append(row)
                print(f"N={n:2d} B={b} {name:48s} {row['tokens_per_s']:7.1f} tok/s x_large={row['x_large']:.2f} "
                      f"acc/draft={row.get('accepted_per_drafted')} wasted={row.get('wasted')} "
                      f"equal_large={row['equal_large']}", flush=True)
            print(f"N={n} B={b} draft/target cost {ratio:.3f} (pre-pass {ratio_pre:.3f}); {rec.line()} "
                  f"[{time.perf_counter() - t_start:.0f}s]", flush=True)
            doc["env"]["loadavg_end"] = os.getloadavg()
            doc["env"]["seconds"] = time.perf_counter() - t_start
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
