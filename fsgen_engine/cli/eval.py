"""``fsgen eval``: accuracy, collaboration statistics and tokens/s of one method on one data set,
in this process or as a Ray job (``--ray``: on a cluster's GPU, skipped when --out already holds it)."""
from __future__ import annotations

NAME = "eval"
HELP = "evaluate a method on a data set (gsm8k, mmlu_stem, mbpp, mtbench, math500)"


def add_arguments(parser) -> None:
    from fsgen_engine.eval.cli_common import add_common, add_ray

    parser.add_argument("--method", default="oracle",
                        help="large, small, oracle, contrastive, proxy, speculative, bild")
    parser.add_argument("--router", default="always",
                        help="always, never, max_prob:t, margin:t, entropy:t, learned:PATH")
    parser.add_argument("--trace-topk", type=int, default=0, metavar="K",
                        help="record System 1's and System 2's top-K distributions per token (traces.jsonl, and "
                             "slm_logits_prob / llm_logits_prob in records.jsonl; 0 = off, research records want "
                             "100); costs a softmax + top-K per model per step and K probabilities + ids per token")
    add_common(parser)
    add_ray(parser)


def _run_on_ray(args, cfg) -> int:
    import sys

    from fsgen_engine.distributed.ray_jobs import run_ray
    from fsgen_engine.eval.cli_common import engine_kwargs
    from fsgen_engine.eval.jobs import Pair, make_job
    from fsgen_engine.eval.runner import print_summary

    pair = Pair(args.large, args.small, args.small_ft, args.large_params, args.small_params)
    job = make_job(pair, cfg, cfg.method, cfg.router, engine_kwargs(args), args.out)
    res = run_ray([job], args.ray, retries=args.ray_retries, cpus_per_job=args.ray_cpus_per_job, echo=False)
    if res.failures:
        f = res.failures[0]
        print(f"fsgen eval: error: the job failed {f.attempts} time(s): {f.error}", file=sys.stderr)
        return 1
    if res.skipped:
        print(f"fsgen eval: {args.out} already holds this run (summary.json); not run again", file=sys.stderr)
    print_summary(res.summaries[job.key])
    return 0


def run(args) -> int:
    import sys

    from fsgen_engine.eval.cli_common import build_engine, make_config
    from fsgen_engine.eval.runner import run_eval

    try:
        cfg = make_config(args, args.method, args.router)
        cfg.trace_topk = args.trace_topk
        from fsgen_engine.eval.datasets import load_examples

        load_examples(cfg.dataset, cfg.data, n=cfg.n, seed=cfg.seed, fewshot_path=cfg.fewshot)  # fail fast
        if args.ray is not None:
            rc = _run_on_ray(args, cfg)
            if rc:
                return rc
        else:
            with build_engine(args) as engine:
                run_eval(engine, cfg, args.out)
    except (ValueError, FileNotFoundError, ImportError) as exc:  # bad input: exit 2, as argparse's own errors
        print(f"fsgen eval: error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        print(f"wrote traces.jsonl, records.jsonl, results.jsonl, summary.json to {args.out}", file=sys.stderr)
    return 0
