"""``fsgen generate``: collaborative generation for a few prompts, with a stats table."""
from __future__ import annotations

import argparse
import os

NAME = "generate"
HELP = "generate with a large/small model pair and a collaboration method"

METHODS = ("large", "small", "oracle", "contrastive", "proxy", "speculative", "bild")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    m = parser.add_argument_group("models and engine")
    m.add_argument("--large", required=True, metavar="PATH", help="large model (System 2): HF folder or GGUF file")
    m.add_argument("--small", required=True, metavar="PATH",
                   help="small model (System 1): HF folder, GGUF file, or early_exit:N (the large model's first N layers)")
    m.add_argument("--small-ft", default=None, metavar="PATH", help="small fine-tuned model (needed by --method proxy)")
    m.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    m.add_argument("--dtype", default=None, help="float32, float16 or bfloat16 (engine default when omitted)")
    m.add_argument("--kv-memory", default=None, help="KV pool size, e.g. 2GiB or 0.5 (fraction of free memory)")
    m.add_argument("--max-batch", type=int, default=None, help="most sequences decoded together")
    m.add_argument("--page-size", type=int, default=None, help="tokens per KV page")
    m.add_argument("--tp", type=int, default=None, metavar="N", help="tensor-parallel ranks of the large model (System 2): worker processes, NCCL on GPUs, gloo on CPU")
    m.add_argument("--small-tp", type=int, default=None, metavar="M", help="ranks of System 1: 1 (default: whole on rank 0, no communication) or --tp (early_exit:N: --tp)")
    c = parser.add_argument_group("collaboration")
    c.add_argument("--method", default="oracle", metavar="METHOD",
                   help="collaboration method: " + ", ".join(METHODS) + " (FS-GEN: oracle, contrastive, proxy, "
                        "speculative; baselines large, small)")
    c.add_argument("--router", default="always",
                   help="when System 2 is called: always, never, max_prob:T, margin:T, entropy:T, learned:ROUTER.json")
    c.add_argument("--num-draft-tokens", type=int, default=None, help="speculative draft length K (default 5)")
    c.add_argument("--draft-stop", default=None, metavar="RULE",
                   help="speculative: a row stops drafting where System 1 is unsure of its draft: entropy:T, "
                        "max_prob:T, margin:T or learned:ROUTER.json (default: always draft K)")
    c.add_argument("--alpha", type=float, default=None,
                   help="contrastive plausibility cutoff (default 0.1) or proxy strength (default 1.0)")
    c.add_argument("--beta", type=float, default=None, help="contrastive weight (default 0.5)")
    c.add_argument("--preset", default=None, help="contrastive preset: fsgen (interpolation) or obrien")
    p = parser.add_argument_group("prompts")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", action="append", metavar="TEXT", help="a prompt (repeat the option for several)")
    src.add_argument("--prompts-file", metavar="FILE",
                     help="prompts, one per line (a .jsonl file: one JSON string or object with 'prompt' per line)")
    p.add_argument("--chat", action="store_true", help="wrap each prompt in the tokenizer's chat template")
    s = parser.add_argument_group("decoding")
    s.add_argument("--max-new-tokens", type=int, default=128, help="most tokens generated per prompt")
    s.add_argument("--temperature", type=float, default=0.0, help="sampling temperature; 0 = greedy (FS-GEN)")
    s.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens")
    s.add_argument("--top-p", type=float, default=None, help="nucleus sampling probability mass")
    s.add_argument("--min-p", type=float, default=None, help="drop tokens below min_p x the top probability")
    s.add_argument("--seed", type=int, default=0, help="random seed for sampling")
    s.add_argument("--stop", action="append", default=None, metavar="TEXT", help="stop string (repeatable)")
    s.add_argument("--ignore-eos", action="store_true", help="keep generating past the end-of-sequence token")
    s.add_argument("-n", "--num-samples", type=int, default=1, metavar="N",
                   help="samples per prompt (they share the prompt's KV; with --temperature 0 they are equal)")
    o = parser.add_argument_group("output")
    o.add_argument("--out", default=None, metavar="TRACES.jsonl",
                   help="write one trace per prompt (input of fsgen analyze / train-router)")
    o.add_argument("--trace-topk", type=int, default=0, metavar="K",
                   help="record System 1's and System 2's top-K distributions per token in the traces (0 = off; "
                        "research records and top-K learned routers want 100); costs a softmax + top-K per model "
                        "per step and K probabilities + ids per token in the trace file")
    o.add_argument("--quiet", action="store_true", help="print neither the texts nor the progress bar")


def read_prompts(args) -> list[str]:
    """The prompts of ``--prompt`` or ``--prompts-file``; ValueError naming the file (and line) when bad."""
    import json

    if args.prompt:
        return list(args.prompt)
    path = args.prompts_file
    prompts = []
    if os.path.isdir(path):
        raise ValueError(f"--prompts-file {path} is a directory; give a text or .jsonl file")
    try:
        with open(path, encoding="utf-8") as f:
            lines = list(f)
    except UnicodeDecodeError as exc:
        raise ValueError(f"--prompts-file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    for n, line in enumerate(lines, 1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if path.endswith(".jsonl"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg} at column {exc.colno}); each line must be "
                                 "a JSON string or an object with a 'prompt' key") from None
            if isinstance(obj, dict):
                if "prompt" not in obj:
                    raise ValueError(f"{path}:{n}: the object has no 'prompt' key (keys: {', '.join(obj) or 'none'})")
                obj = obj["prompt"]
            if not isinstance(obj, str):
                raise ValueError(f"{path}:{n}: the prompt must be a JSON string, got {type(obj).__name__}")
            prompts.append(obj)
        else:
            prompts.append(line)
    if not prompts:
        raise ValueError(f"{path} holds no prompts")
    return prompts


def check_out_path(path: str | None, option: str = "--out") -> None:
    """Fail before any model is loaded when ``path`` cannot be written (missing directory, a directory)."""
    if path is None:
        return
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"{option} {path} is a directory; give a file name, e.g. {os.path.join(path, 'traces.jsonl')}")
    if not os.path.isdir(parent):
        raise ValueError(f"{option} {path}: the directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{option} {path}: the directory {parent} is not writable")


def gen_kwargs(args, router=None) -> dict:
    kw = {"method": args.method, "router": args.router if router is None else router,
          "max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "seed": args.seed, "chat": args.chat}
    for k in ("top_k", "top_p", "min_p", "num_draft_tokens", "draft_stop", "alpha", "beta", "preset", "stop"):
        v = getattr(args, k)
        if v is not None:
            kw[k] = v
    if args.ignore_eos:
        kw["ignore_eos"] = True
    if getattr(args, "trace_topk", 0):
        kw["trace_topk"] = args.trace_topk
    if getattr(args, "num_samples", 1) != 1:
        kw["n"] = args.num_samples
    return kw


def stats_table(outputs, wall_s: float):
    """A rich Table: one row per prompt and a total row."""
    from rich.table import Table

    t = Table(title="generation stats")
    for col in ("#", "tokens", "large calls", "mismatches", "CF", "acceptance", "tokens/s"):
        t.add_column(col, justify="right")
    tot = {"tokens": 0, "calls": 0, "mism": 0, "draft": 0, "acc": 0}

    def acc(d, a):
        return f"{a / d:.3f}" if d else "-"

    for i, o in enumerate(outputs):
        s = o.stats
        t.add_row(str(i), str(s.total_tokens), str(s.large_calls), str(s.mismatches),
                  f"{s.collaboration_frequency:.3f}", acc(s.draft_tokens, s.accepted_draft_tokens),
                  f"{s.tokens_per_s:.1f}" if s.tokens_per_s else "-")
        tot["tokens"] += s.total_tokens
        tot["calls"] += s.large_calls
        tot["mism"] += s.mismatches
        tot["draft"] += s.draft_tokens
        tot["acc"] += s.accepted_draft_tokens
    cf = tot["mism"] / tot["tokens"] if tot["tokens"] else 0.0
    t.add_row("all", str(tot["tokens"]), str(tot["calls"]), str(tot["mism"]), f"{cf:.3f}",
              acc(tot["draft"], tot["acc"]), f"{tot['tokens'] / wall_s:.1f}" if wall_s > 0 else "-",
              style="bold")
    return t


def run(args) -> int:
    import sys
    import time

    from rich.console import Console

    from fsgen_engine.benchmark.console import print_table

    console = Console()
    err = Console(stderr=True)
    try:
        # every check that needs no model runs before the (slow) loading
        prompts = read_prompts(args)
        check_out_path(args.out)
        from fsgen_engine.routers import parse_router

        router = parse_router(args.router)
        from fsgen_engine.engine import Engine
        from fsgen_engine.generate_args import generate_kwargs

        from fsgen_engine.tp.checks import tp_engine_kwargs

        kw = {k: getattr(args, k) for k in ("device", "dtype", "kv_memory", "max_batch", "page_size")
              if getattr(args, k) is not None}
        kw.update(tp_engine_kwargs(args.small, args.tp, args.small_tp))
        with err.status(f"loading {args.large} + {args.small}", spinner="dots") if not args.quiet else _null():
            engine = Engine(args.large, args.small, args.small_ft, **kw)
        with engine:
            t0 = time.perf_counter()
            outputs = engine.generate(prompts, progress=not args.quiet,
                                      **generate_kwargs(**gen_kwargs(args, router)))
            wall = time.perf_counter() - t0
    except (ValueError, OSError) as exc:  # user errors: one line, exit code 2 (as argparse's own)
        print(f"fsgen generate: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    if not args.quiet:
        n = max(args.num_samples, 1)
        for j, o in enumerate(outputs):   # prompt-major: sample j % n of prompt j // n
            label = f"{j // n}" + (f".{j % n}" if n > 1 else "")
            console.rule(f"[{label}] {o.finish_reason}")
            console.print(o.prompt, style="dim", markup=False, highlight=False)
            console.print(o.text, markup=False, highlight=False)
    print_table(console, stats_table(outputs, wall))
    if args.out:
        from fsgen_engine.outputs import write_traces

        for o in outputs:
            o.meta = {"large": args.large, "small": args.small, **(o.meta or {})}
        write_traces(args.out, outputs)
        print(f"wrote {len(outputs)} traces to {args.out}", file=sys.stderr)
    return 0


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    return " ".join(text.split())


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
