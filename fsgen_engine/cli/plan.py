"""``fsgen plan``: per-rank memory, KV capacity, all-reduce bytes and predicted batch-1 tokens/s of a
large model at tensor parallelism N beside a small model at TP=1, on paper (no weights needed)."""
from __future__ import annotations

NAME = "plan"
HELP = "plan a large/small pair on GPUs you do not have: memory, KV capacity, communication, tokens/s"


def add_arguments(parser) -> None:
    parser.add_argument("--large", required=True, help="known name (e.g. qwen1.5-72b) or an HF folder / config.json")
    parser.add_argument("--small", required=True, help="known name (e.g. qwen1.5-0.5b) or an HF folder / config.json")
    parser.add_argument("--gpus", required=True, help="COUNTxNAME, e.g. 4xH100, 2xH200, 8xA100-80GB")
    parser.add_argument("--tp", type=int, default=None, help="tensor parallelism of the large model (default: every GPU)")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"),
                        help="weights, activations and KV cache dtype")
    parser.add_argument("--context", type=int, default=1024, help="tokens in context when decoding (KV read per step)")
    parser.add_argument("--num-draft-tokens", type=int, default=5, help="speculative K")
    parser.add_argument("--share", action="append", default=[], metavar="METHOD=F",
                        help="expected large-call share of a method (large calls / tokens), e.g. oracle=0.3")
    parser.add_argument("--link-gbps", type=float, default=None,
                        help="assumed per-direction link bandwidth in GB/s (default: the GPU table's)")
    parser.add_argument("--allreduce-latency-us", type=float, default=None,
                        help="assumed fixed cost of one collective in microseconds (default: the GPU table's)")
    parser.add_argument("--layer-overhead-us", type=float, default=0.0,
                        help="fixed cost per decoder layer and step (launches, host work); 0 = bandwidth bound. "
                             "This engine's batch-1 figures on an H200 (bench/results/h200_check1) fit about 145")
    parser.add_argument("--json", action="store_true", help="print the plan as one JSON object")


def _shares(items: list[str]) -> dict[str, float]:
    out = {}
    for it in items:
        m, sep, f = it.partition("=")
        try:
            out[m.strip()] = float(f)
        except ValueError:
            raise ValueError(f"--share {it!r}: write METHOD=F, e.g. oracle=0.2") from None
        if not sep:
            raise ValueError(f"--share {it!r}: write METHOD=F, e.g. oracle=0.2")
    return out


def print_plan(plan) -> None:
    from fsgen_engine.analysis.report import print_table

    gib = 2 ** 30
    print_table(f"fsgen plan (planned, not measured): large {plan.large} at TP={plan.tp} + small {plan.small} "
                f"at TP=1, {plan.num_gpus}x{plan.gpu}",
                ["rank", "holds", "weights GiB", "KV bytes/token", "KV capacity tokens", "all-reduced bytes/token",
                 "sent bytes/token"],
                [[r.rank, r.holds, f"{r.weight_bytes / gib:.2f}", r.kv_bytes_per_token,
                  r.kv_capacity_tokens if r.fits else "does not fit", r.allreduce_bytes_per_token,
                  f"{r.ring_bytes_per_token:.0f}"] for r in plan.ranks])
    print_table("predicted decode at batch 1 (planned)", ["method", "large-call share", "ms/token", "tokens/s"],
                [[m.method, f"{m.large_share:g}", f"{m.seconds_per_token * 1e3:.3f}", f"{m.tokens_per_s:.1f}"]
                 for m in plan.methods])
    print(f"large step {plan.t_large_s * 1e3:.3f} ms (communication {plan.t_large_comm_s * 1e3:.3f} ms), "
          f"small step {plan.t_small_s * 1e3:.3f} ms; KV capacity of the pair {plan.kv_capacity_tokens} tokens")
    for r in plan.ranks:
        if not r.fits:
            print(f"WARNING: does not fit: rank {r.rank} holds {r.weight_bytes / gib:.1f} GiB of weights, more than "
                  f"the {plan.usable_bytes / gib:.1f} GiB it has for weights + KV; use more GPUs (--gpus, --tp)")
    for a in plan.assumptions:
        print(f"assumption: {a}")


def run(args) -> int:
    import json
    import sys

    from fsgen_engine.planning.hardware import parse_gpus, with_overrides
    from fsgen_engine.planning.plan import make_plan
    from fsgen_engine.planning.shapes import resolve_model

    try:
        count, gpu = parse_gpus(args.gpus)
        gpu = with_overrides(gpu, link_bw=None if args.link_gbps is None else args.link_gbps * 1e9,
                             link_latency=None if args.allreduce_latency_us is None else args.allreduce_latency_us * 1e-6)
        large, small = resolve_model(args.large), resolve_model(args.small)
        plan = make_plan(large, small, gpu, count, args.tp, dtype_bytes=4 if args.dtype == "float32" else 2,
                         context=args.context, num_draft_tokens=args.num_draft_tokens, shares=_shares(args.share),
                         layer_overhead_s=args.layer_overhead_us * 1e-6)
    except ValueError as exc:  # bad input: exit 2, as argparse's own errors
        print(f"fsgen plan: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(plan.to_dict()))
    else:
        print_plan(plan)
    return 0
