"""End-to-end GPU figures for the GPU check (issue 10, stage 5), in one short process.

A random-weight Qwen2.5-7B-shaped large and a 0.5B-shaped small, bf16, built directly on the GPU
(no files: the engine shares the HF tensors through ``from_hf_model``), CUDA graphs on:
  - engine ``large`` tokens/s at each batch size, and its share of the bandwidth floor
    (weight bytes / measured copy bandwidth = the fastest batch-1 decode possible);
  - HF ``generate`` (greedy, dynamic cache) tokens/s in the same run;
  - engine ``small`` tokens/s, giving the draft/target cost ratio ``c`` of a speculative round
    (one System-1 step over one System-2 step, at batch 1);
  - the speculative speedup *projected* with the standard formula (1 - a^(K+1)) / ((1 - a)(cK + 1))
    for acceptance a in {0.6, 0.7, 0.8}; random weights make a measured acceptance meaningless, so
    the measured ``speculative`` row is reported for its step cost only.

    python bench/e2e/gpu_e2e.py --out bench/results/e2e_gpu_check.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _hf(name: str, dtype, seed: int, device="cuda"):
    from transformers import AutoModelForCausalLM

    from fsgen_engine.benchmark.configs import hf_config

    torch.manual_seed(seed)
    with torch.device(device):
        m = AutoModelForCausalLM.from_config(hf_config(name), dtype=dtype)
    m.generation_config.eos_token_id = None
    return m.eval()


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn, runs: int) -> float:
    secs = []
    for _ in range(runs):
        _sync()
        t0 = time.perf_counter()
        fn()
        _sync()
        secs.append(time.perf_counter() - t0)
    return statistics.median(secs)


def projected_speedup(a: float, c: float, k: int) -> float:
    return (1 - a ** (k + 1)) / ((1 - a) * (c * k + 1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--large", default="qwen2.5-7b")
    ap.add_argument("--small", default="qwen2.5-0.5b")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--out", default="bench/results/e2e_gpu_check.json")
    ap.add_argument("--dry", action="store_true", help="check this script on the CPU with tiny models")
    args = ap.parse_args()
    from fsgen_engine.benchmark.bandwidth import shape_from_hf_config
    from fsgen_engine.benchmark.hf import HFGenerate
    from fsgen_engine.engine import Engine
    from fsgen_engine.generate_args import generate_kwargs
    import triton.testing as tt

    dtype, dev = torch.bfloat16, "cuda"
    if args.dry:
        dtype, dev, bw = torch.float32, "cpu", 1e10
        args.large, args.small, args.prompt_len, args.new_tokens = "tiny-llama-b", "tiny-llama-a", 8, 4
    else:
        n = 1 << 30
        src = torch.randint(0, 255, (n,), dtype=torch.uint8, device="cuda")
        dst = torch.empty_like(src)
        bw = 2 * n / (tt.do_bench(lambda: dst.copy_(src), warmup=25, rep=200, return_mode="median") * 1e-3)
        del src, dst
    t0 = time.perf_counter()
    hf_large, hf_small = _hf(args.large, dtype, 0, dev), _hf(args.small, dtype, 1, dev)
    print(f"built random {args.large} + {args.small} in {time.perf_counter() - t0:.1f} s")
    wbytes = shape_from_hf_config(hf_large.config, torch.tensor([], dtype=dtype).element_size()).weight_bytes
    floor_tps = bw / wbytes
    eng = Engine(hf_large, hf_small, device=dev, dtype=str(dtype)[6:], max_batch=max(args.batch_sizes),
                 kv_memory="8GiB" if dev == "cuda" else "64MiB", cuda_graphs=dev == "cuda")
    doc = dict(device=torch.cuda.get_device_name(0) if dev == "cuda" else "cpu (dry run)", large=args.large,
               small=args.small, dtype=str(dtype)[6:],
               copy_bandwidth_gbs=bw / 1e9, large_weight_bytes=wbytes, graph_status=dict(eng.graph_status),
               batch1_floor_tokens_per_s=floor_tps, prompt_len=args.prompt_len, new_tokens=args.new_tokens,
               runs=args.runs, rows=[], note="random weights: speed figures are representative; acceptance is not")
    g = torch.Generator().manual_seed(0)
    for B in args.batch_sizes:
        hi = min(49152, hf_large.config.vocab_size)
        prompts = [torch.randint(3, hi, (args.prompt_len,), generator=g).tolist() for _ in range(B)]
        row = dict(batch=B)

        def run(method, n_new, **kw):
            return eng.generate(prompts, method=method, max_new_tokens=n_new, ignore_eos=True, progress=False,
                                **generate_kwargs(**kw))
        for method, kw in (("large", {}), ("small", {}), ("speculative", dict(num_draft_tokens=4))):
            run(method, 8, **kw)   # warm-up: lazy graph capture, allocator, Triton compilation
            t = _timed(lambda: run(method, args.new_tokens, **kw), args.runs)
            row[f"{method}_tokens_per_s"] = B * args.new_tokens / t
        hf = HFGenerate(hf_large, cache="dynamic")
        hf(prompts, 4)
        hf_secs = statistics.median(hf(prompts, args.new_tokens)[1] for _ in range(args.runs))
        row["hf_generate_tokens_per_s"] = B * args.new_tokens / hf_secs
        row["large_vs_hf"] = row["large_tokens_per_s"] / row["hf_generate_tokens_per_s"]
        # per-step share of the floor: one decode step reads the weights once for the whole batch
        row["large_share_of_bandwidth_floor"] = row["large_tokens_per_s"] / B / floor_tps
        c = row["large_tokens_per_s"] / row["small_tokens_per_s"]
        row["cost_ratio_c"] = c
        row["projected_speculative_speedup"] = {
            f"a={a}": {f"K={k}": projected_speedup(a, c, k) for k in (2, 4, 6, 8)} for a in (0.6, 0.7, 0.8)}
        doc["rows"].append(row)
        print(json.dumps(row))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"copy bandwidth {bw / 1e9:.0f} GB/s; batch-1 floor {floor_tps:.1f} tok/s ({wbytes / 1e9:.2f} GB of weights)")
    print(f"{'B':>3} {'large':>8} {'small':>8} {'spec':>8} {'hf':>8} {'x hf':>6} {'floor%':>7} {'c':>6} "
          f"{'proj a=.7 K=4':>14}")
    for r in doc["rows"]:
        print(f"{r['batch']:>3} {r['large_tokens_per_s']:8.1f} {r['small_tokens_per_s']:8.1f} "
              f"{r['speculative_tokens_per_s']:8.1f} {r['hf_generate_tokens_per_s']:8.1f} {r['large_vs_hf']:6.2f} "
              f"{r['large_share_of_bandwidth_floor']:7.1%} {r['cost_ratio_c']:6.3f} "
              f"{r['projected_speculative_speedup']['a=0.7']['K=4']:14.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
