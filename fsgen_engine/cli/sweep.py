"""``fsgen sweep``: the speed-quality frontier of routers/thresholds and methods for one model pair."""
from __future__ import annotations

NAME = "sweep"
HELP = "speed-quality frontier: sweep routers/thresholds and methods"


def add_arguments(parser) -> None:
    from fsgen_engine.eval.cli_common import add_common
    from fsgen_engine.eval.sweep import DEFAULT_ROUTERS

    parser.add_argument("--routers", nargs="+", default=DEFAULT_ROUTERS,
                        help="router specs, thresholds comma-separated: max_prob:0.3,0.5,0.7 margin:0.1,0.2 "
                             "entropy:1,2 learned:PATH always")
    parser.add_argument("--methods", default="oracle,contrastive", help="comma-separated methods")
    add_common(parser)


def run(args) -> int:
    import sys

    from fsgen_engine.eval.cli_common import build_engine, make_config
    from fsgen_engine.eval.sweep import parse_methods, parse_routers, run_sweep

    try:
        routers = parse_routers(args.routers)
        methods = parse_methods(args.methods)
        cfg = make_config(args)
        from fsgen_engine.eval.datasets import load_examples

        load_examples(cfg.dataset, cfg.data, n=cfg.n, seed=cfg.seed, fewshot_path=cfg.fewshot)  # fail fast
        if cfg.dataset == "mtbench":
            raise ValueError("--dataset mtbench has no accuracy (generation only); sweep a scored data set")
        engine = build_engine(args)
        run_sweep(engine, cfg, methods, routers, args.out)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"fsgen sweep: error: {exc}", file=sys.stderr)
        return 1
    if args.out:
        print(f"wrote frontier.png / frontier.md / frontier.csv to {args.out}", file=sys.stderr)
    return 0
