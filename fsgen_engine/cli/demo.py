"""``fsgen demo``: the collaborative-decoding demo on the embedded default model (SmolLM2-135M)."""
from __future__ import annotations

import os

NAME = "demo"
HELP = "run the collaborative-decoding demo on the embedded default model"


def add_arguments(parser) -> None:
    parser.add_argument("--out", default=os.path.join("fsgen_out", "demo"),
                        help="output folder for traces (JSONL), tables and plots (default ./fsgen_out/demo)")
    parser.add_argument("--quick", action="store_true", help="fewer prompts, tokens and methods (for tests)")
    parser.add_argument("--early-exit", type=int, default=24, metavar="N",
                        help="the small model is the large model's first N layers (default 24 of 30: with fewer, this 135M model's early exit rarely agrees with the full model)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default 32 (8 with --quick)")
    parser.add_argument("--prompt", action="append", default=[], help="a prompt (repeat for several)")
    parser.add_argument("--methods", nargs="+", default=[],
                        help="subset of: large small oracle speculative speculative-sampled contrastive bild "
                             "oracle@max_prob:0.5")
    parser.add_argument("--large", default=None, help="another large model (HF folder or .gguf) instead of SmolLM2")
    parser.add_argument("--no-baseline", action="store_true", help="skip the HF transformers baseline")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", help="auto (float32 on CPU, bfloat16 on GPU), float32, ...")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tp", type=int, default=None, metavar="N", help="tensor-parallel ranks of the large model (System 2): worker processes, NCCL on GPUs, gloo on CPU")
    parser.add_argument("--small-tp", type=int, default=None, metavar="M", help="ranks of System 1: 1 (default: whole on rank 0, no communication) or --tp (early_exit:N: --tp)")


def run(args) -> int:
    from rich.console import Console

    from fsgen_engine.demo import DemoConfig, run_demo

    console = Console()
    if args.early_exit < 1:
        console.print(f"[red]--early-exit {args.early_exit}: give a positive number of layers, e.g. 10")
        return 2
    cfg = DemoConfig(out=args.out, quick=args.quick, early_exit=args.early_exit, max_new_tokens=args.max_new_tokens,
                     prompts=args.prompt, methods=args.methods, large=args.large, device=args.device,
                     dtype=args.dtype, baseline=not args.no_baseline, seed=args.seed,
                     tp=args.tp, small_tp=args.small_tp)
    try:
        cfg = cfg.resolved()
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}")
        return 2
    run_demo(cfg, console)
    return 0
