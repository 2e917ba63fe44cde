"""``fsgen sweep``: the speed-quality frontier of routers/thresholds and methods, for one model pair
or several (``--pair`` / ``--pairs``: then also collaboration frequency per pair and the scaling-law
fit across pairs), serially or as Ray jobs (``--ray``)."""
from __future__ import annotations

NAME = "sweep"
HELP = "speed-quality frontier: sweep routers/thresholds and methods (one or several model pairs; --ray)"


def add_arguments(parser) -> None:
    from fsgen_engine.eval.cli_common import add_common, add_ray
    from fsgen_engine.eval.sweep import DEFAULT_ROUTERS

    parser.add_argument("--routers", nargs="+", default=DEFAULT_ROUTERS,
                        help="router specs, thresholds comma-separated: max_prob:0.3,0.5,0.7 margin:0.1,0.2 "
                             "entropy:1,2 learned:PATH always")
    parser.add_argument("--methods", default="oracle,contrastive", help="comma-separated methods")
    parser.add_argument("--draft-stops", nargs="+", default=[], metavar="RULE",
                        help="also run speculative decoding (--num-draft-tokens K) with plain K and with each "
                             "draft_stop rule, thresholds comma-separated: entropy:0.5,1,2 max_prob:0.5 (one pair, "
                             "without --ray)")
    p = parser.add_argument_group("several model pairs (instead of --large/--small)")
    p.add_argument("--pair", nargs=2, action="append", metavar=("LARGE", "SMALL"),
                   help="a model pair; repeat for several")
    p.add_argument("--pair-params", nargs=2, action="append", metavar=("LARGE_PARAMS", "SMALL_PARAMS"),
                   help="nominal parameter counts of each --pair, in order (e.g. 7B 0.5B), for the scaling law")
    p.add_argument("--pairs", metavar="FILE", default=None,
                   help="JSON list or CSV of pairs: large, small[, large_params, small_params, small_ft, label]")
    add_common(parser, models_required=False)
    add_ray(parser)


def _pairs(args):
    from fsgen_engine.eval.jobs import Pair
    from fsgen_engine.eval.pairs import pairs_from_args

    if args.pair or args.pairs:
        if args.large or args.small:
            raise ValueError("give either --large/--small or --pair/--pairs, not both")
        return pairs_from_args(args.pair, args.pair_params, args.pairs, args.small_ft)
    if args.pair_params:
        raise ValueError("--pair-params goes with --pair; for --large/--small use --large-params/--small-params")
    if not (args.large and args.small):
        raise ValueError("give the models: --large and --small, or --pair LARGE SMALL (repeatable), or --pairs FILE")
    return [Pair(args.large, args.small, args.small_ft, args.large_params, args.small_params)]


def run(args) -> int:
    import sys

    from fsgen_engine.eval.cli_common import build_engine, engine_kwargs, make_config
    from fsgen_engine.eval.sweep import parse_methods, parse_routers, run_sweep, run_sweep_jobs

    try:
        routers = parse_routers(args.routers)
        draft_stops = parse_routers(args.draft_stops)
        methods = parse_methods(args.methods)
        pairs = _pairs(args)
        if len(pairs) == 1:  # one --pair is the same run as --large/--small
            p = pairs[0]
            args.large, args.small, args.large_params, args.small_params = (p.large, p.small, p.large_params,
                                                                            p.small_params)
        cfg = make_config(args)
        from fsgen_engine.eval.datasets import load_examples

        load_examples(cfg.dataset, cfg.data, n=cfg.n, seed=cfg.seed, fewshot_path=cfg.fewshot)  # fail fast
        if cfg.dataset == "mtbench":
            raise ValueError("--dataset mtbench has no accuracy (generation only); sweep a scored data set")
        if len(pairs) == 1 and args.ray is None:  # one pair in this process, as always
            with build_engine(args) as engine:
                run_sweep(engine, cfg, methods, routers, args.out, draft_stops=draft_stops)
            failures = []
        else:
            if draft_stops:
                raise ValueError("--draft-stops runs one pair in this process: drop --ray / the extra pairs")
            _, failures = run_sweep_jobs(pairs, cfg, methods, routers, args.out, engine_kwargs(args),
                                         ray_address=args.ray, use_ray=args.ray is not None,
                                         retries=args.ray_retries, cpus_per_job=args.ray_cpus_per_job)
    except (ValueError, FileNotFoundError, ImportError) as exc:  # bad input: exit 2, as argparse's own errors
        print(f"fsgen sweep: error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        print(f"wrote frontier.png / frontier.md / frontier.csv to {args.out}", file=sys.stderr)
    if failures:
        print(f"fsgen sweep: {len(failures)} job(s) failed after retries (rerun the same command to retry only "
              "them; finished jobs are kept):", file=sys.stderr)
        for f in failures:
            print(f"  {f.key}: {f.error}", file=sys.stderr)
        return 1
    return 0
