"""``fsgen train-router``: fit a learned router (RBF SVM or logistic regression) from trace files."""
from __future__ import annotations

import argparse

NAME = "train-router"
HELP = "fit a learned router from traces (scikit-learn)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("traces", nargs="*", metavar="TRACES.jsonl",
                        help="trace files written by `fsgen generate --out` or `fsgen eval --out` "
                             "(best with --router always, so every step has a large-model label)")
    parser.add_argument("--out", required=True, metavar="ROUTER.json",
                        help="where to save the router, as data-only JSON (use it as --router learned:ROUTER.json)")
    parser.add_argument("--convert", metavar="OLD.joblib", default=None,
                        help="instead of training: rewrite an old pickled router (fsgen-router/1 joblib) as JSON. "
                             "Loading a pickle runs any code it holds: only convert files you trust")
    parser.add_argument("--kind", choices=("svm", "logistic"), default="svm",
                        help="classifier: RBF SVM with probability outputs (FS-GEN) or logistic regression")
    parser.add_argument("--top-k", type=int, default=10,
                        help="use the K sorted top-k probabilities + entropy as features when the traces carry a "
                             "small_topk_probs column (fsgen generate/eval --trace-topk K, K >= this; shorter rows "
                             "are padded with zeros); otherwise (and with 0) the trace statistics entropy, max prob, "
                             "margin and 2nd prob are used")
    parser.add_argument("--seed", type=int, default=0, help="seed for negative down-sampling and the classifier")
    parser.add_argument("--neg-ratio", type=float, default=1.0,
                        help="negatives kept per positive (FS-GEN: 1.0 = balanced 1:1)")
    parser.add_argument("--max-samples", type=int, default=20000,
                        help="cap on training rows after balancing (an RBF SVM is quadratic in rows)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="fire when the predicted mismatch probability is at least this")


def _has_topk(paths) -> bool:
    import json

    from fsgen_engine.router_features import TOPK_COLUMN

    for p in paths:
        with open(p, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    return TOPK_COLUMN in json.loads(line).get("trace", {})
    return False


def run(args) -> int:
    import sys

    from fsgen_engine.router_training import save_router, train_router_from_traces

    if args.convert:
        return _convert(args)
    if not args.traces:
        print("fsgen train-router: error: give trace files (TRACES.jsonl ...) or --convert OLD.joblib",
              file=sys.stderr)
        return 2
    try:
        from fsgen_engine.cli.generate import check_out_path

        check_out_path(args.out)
        top_k = args.top_k if args.top_k > 0 and _has_topk(args.traces) else 0
        if args.top_k > 0 and top_k == 0:
            print("fsgen train-router: traces have no top-k column; using features entropy, max_prob, margin, "
                  "top2_prob", file=sys.stderr)
        bundle = train_router_from_traces(args.traces, kind=args.kind, top_k=top_k, seed=args.seed,
                                          ratio=args.neg_ratio, max_samples=args.max_samples,
                                          threshold=args.threshold)
        save_router(bundle, args.out)
    except (ValueError, OSError) as exc:
        print(f"fsgen train-router: error: {exc}", file=sys.stderr)
        return 2
    m = bundle["metadata"]
    print(f"trained {bundle['kind']} router on {m['n_train']} steps ({m['n_pos']} mismatches, {m['n_neg']} matches "
          f"of {m['n_steps']} routed steps); features {bundle['features']} -> {args.out}")
    return 0


def _convert(args) -> int:
    import sys
    import warnings

    from fsgen_engine.router_format import load_router
    from fsgen_engine.router_training import save_router

    if args.traces:
        print("fsgen train-router: error: --convert takes no trace files", file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the user asked for exactly this
            bundle = load_router(args.convert, allow_pickle=True)
        save_router(bundle, args.out)
    except (ValueError, OSError) as exc:
        print(f"fsgen train-router: error: {exc}", file=sys.stderr)
        return 2
    print(f"converted {args.convert} -> {args.out} (JSON, data only)")
    return 0
