"""``fsgen bench``: end-to-end tokens/s of the engine methods against HF transformers baselines."""
from __future__ import annotations

NAME = "bench"
HELP = "tokens/s harness: engine methods against HF transformers baselines"


def add_arguments(parser) -> None:
    parser.add_argument("--models", nargs="+", default=["real"], metavar="SPEC",
                        help="model pairs: 'real' (SmolLM2-135M + early_exit:N), 'LARGE+SMALL' with shapes "
                             "qwen2.5-0.5b/1.5b/3b/7b/14b (random weights) or early_exit:N, or HF folder/.gguf paths")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4], metavar="B")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per contender (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up calls per contender")
    parser.add_argument("--prompt-len", type=int, default=32, help="prompt tokens for random-weight models")
    parser.add_argument("--early-exit", type=int, default=10, help="layers of the early-exit small model")
    parser.add_argument("--methods", nargs="*", default=None, metavar="M",
                        help="engine methods (label or method@router); default: large small speculative oracle "
                             "oracle@max_prob:0.5 contrastive bild; give none to measure only the baselines")
    parser.add_argument("--draft-stop", nargs="+", default=[], metavar="RULE",
                        help="add speculative rows with these draft_stop rules (entropy:T, max_prob:T, margin:T, "
                             "learned:PATH), labelled speculative@draft_stop=RULE")
    parser.add_argument("--baselines", nargs="*", default=["hf", "hf-assisted"], choices=["hf", "hf-assisted"])
    parser.add_argument("--hf-cache", default="static", choices=["static", "dynamic"],
                        help="HF generate KV cache (static falls back to dynamic with a note)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", help="auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16, float16")
    parser.add_argument("--results-dir", default="bench/results")
    parser.add_argument("--tag", default=None, help="file stem: e2e_<tag>.json/.md/.png (default <device>_<models>)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tp", type=int, default=None, metavar="N", help="tensor-parallel ranks of the large model (System 2): worker processes, NCCL on GPUs, gloo on CPU")
    parser.add_argument("--small-tp", type=int, default=None, metavar="M", help="ranks of System 1: 1 (default: whole on rank 0, no communication) or --tp (early_exit:N: --tp)")
    parser.add_argument("--cuda-graphs", default="auto", choices=["auto", "on", "off"],
                        help="replay CUDA graphs of decode/verify steps (auto: FSGEN_CUDA_GRAPHS, on by default on "
                             "CUDA); run once with each to measure what graphs save")


def run(args) -> int:
    from rich.console import Console

    from fsgen_engine.benchmark.harness import DEFAULT_METHODS, Settings, resolve_device_dtype, run_benchmark
    from fsgen_engine.benchmark.report import environment, write_results

    console = Console(stderr=True)
    for b in args.batch_sizes:
        if b < 1:
            console.print(f"[red]--batch-sizes {b}: batch sizes must be >= 1")
            return 2
    s = Settings(batch_sizes=args.batch_sizes, max_new_tokens=args.max_new_tokens, runs=args.runs,
                 warmup=args.warmup, prompt_len=args.prompt_len, early_exit=args.early_exit,
                 methods=(list(DEFAULT_METHODS) if args.methods is None else args.methods)
                 + [f"speculative@draft_stop={r}" for r in args.draft_stop], device=args.device,
                 dtype=args.dtype, hf_cache=args.hf_cache, baselines=args.baselines, seed=args.seed,
                 cuda_graphs={"auto": None, "on": True, "off": False}[args.cuda_graphs], tp=args.tp,
                 small_tp=args.small_tp)
    dev, _ = resolve_device_dtype(s.device, s.dtype)
    with console.status("[bold]benchmarking...") as status:
        def progress(msg):
            if msg:
                status.update(f"[bold]measuring[/] {msg}")

        doc = run_benchmark(args.models, s, log=lambda m: console.log(m), progress=progress)
    doc = {"env": environment(str(dev), getattr(args, "command_line", None))} | doc
    tag = args.tag or f"{dev.type}_" + "_".join(p["label"] for p in doc["pairs"])
    paths = write_results(doc, args.results_dir, tag)
    _print_table(Console(), doc)
    console.print("wrote " + ", ".join(paths))
    return 0 if all(not r["error"] for r in doc["rows"]) else 1


def _print_table(console, doc: dict) -> None:
    from rich.table import Table

    from fsgen_engine.benchmark.report import COLUMNS, _fmt

    t = Table(title=f"fsgen bench on {doc['env']['device_name']}", caption=f"copy bandwidth "
              f"{doc['copy_bandwidth_gbs']:.1f} GB/s; " + "; ".join(doc.get("notes", [])))
    for _, head in COLUMNS:
        t.add_column(head, justify="right" if head not in ("pair", "contender") else "left")
    for r in doc["rows"]:
        t.add_row(*[_fmt(r.get(k), k) for k, _ in COLUMNS], style="red" if r.get("error") else None)
    from fsgen_engine.benchmark.console import print_table

    print_table(console, t)
    for r in doc["rows"]:
        if r.get("error"):
            console.print(f"[red]{r['contender']} (batch {r['batch']}): {r['error']}")
