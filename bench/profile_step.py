#!/usr/bin/env python
"""Where a decode step's time goes: torch profiler over a short generation, top ops by device time.

    python bench/profile_step.py [--shape qwen2.5-0.5b] [--method large] [--batch 1] [--tokens 16]

Random weights of a real shape (``fsgen_engine.benchmark.configs.SHAPES``; ``tiny-llama-b`` on CPU by
default), bf16 on GPU. CUDA graphs are off by default so each kernel shows under its own op; pass
``--cuda-graphs on`` to see what is left between replays. Writes the table to ``--out`` too.
"""
from __future__ import annotations

import argparse
import sys

import torch


def build_model(shape: str, device: str, dtype: torch.dtype):
    import transformers

    from fsgen_engine.benchmark.configs import SHAPES
    from fsgen_engine.models import from_hf_model

    cfg = dict(SHAPES[shape])
    model_type = cfg.pop("model_type")
    config = transformers.AutoConfig.for_model(model_type, **cfg)
    torch.manual_seed(0)
    with torch.device("meta"):
        hf = transformers.AutoModelForCausalLM.from_config(config)
    hf = hf.to_empty(device=device).to(dtype)
    for p in hf.parameters():  # random, not zeros: zeros can run faster than real data
        torch.nn.init.normal_(p, std=0.02)
    return from_hf_model(hf.eval(), dtype=dtype, device=device)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cuda = torch.cuda.is_available()
    ap.add_argument("--shape", default="qwen2.5-0.5b" if cuda else "tiny-llama-b")
    ap.add_argument("--small", default="early_exit:2", help="small model for collaborative methods")
    ap.add_argument("--method", default="large")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--tokens", type=int, default=16, help="new tokens in the profiled generation")
    ap.add_argument("--cuda-graphs", choices=["on", "off"], default="off")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    from torch.profiler import ProfilerActivity, profile

    from fsgen_engine.engine import Engine

    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    model = build_model(args.shape, device, dtype)
    eng = Engine(model, args.small, device=device, dtype=dtype, max_batch=max(args.batch, 1), kv_memory="1GiB",
                 cuda_graphs=(args.cuda_graphs == "on") if cuda else None)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, min(model.vocab_size, 32000), (args.prompt_len,), generator=g).tolist()
               for _ in range(args.batch)]
    kw = dict(method=args.method, ignore_eos=True, progress=False)
    eng.generate(prompts, max_new_tokens=args.tokens, **kw)  # warm-up: compilation, graph capture
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        eng.generate(prompts, max_new_tokens=args.tokens, **kw)
        if cuda:
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=args.top)
    head = (f"# {args.method}, shape {args.shape}, batch {args.batch}, prompt {args.prompt_len}, "
            f"{args.tokens} tokens, {device} {dtype}, CUDA graphs {eng.graph_status}\n")
    print(head + table)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(head + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
