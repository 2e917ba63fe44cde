"""``fsgen analyze {collab,position,uncertainty,scaling-law}``: FS-GEN analyses from trace files.

Input files are our trace JSONL (``fsgen generate/eval --out``) or FS-GEN record JSONL (detected per
line). With ``--out DIR`` every analysis writes a PNG plus the same numbers as .md and .csv.
"""
from __future__ import annotations

import argparse

NAME = "analyze"
HELP = "FS-GEN analyses from trace files: collaboration, position, uncertainty, scaling law"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="analysis", metavar="ANALYSIS")

    def common(p, by=True):
        p.add_argument("files", nargs="+", metavar="FILES", help="trace JSONL or FS-GEN record JSONL files")
        p.add_argument("--out", metavar="DIR", help="write PNG + markdown/CSV tables here")
        if by:
            p.add_argument("--by", default="auto",
                           help="group by: auto (model pair | data set from meta, else file), file, or a meta key")

    common(sub.add_parser("collab", help="collaboration frequency, large-call ratio, mismatch ratio"))
    common(sub.add_parser("position", help="relative position of mismatches in 10%% bins (heatmap)"))
    p = sub.add_parser("uncertainty", help="entropy / max prob / margin at match vs mismatch, ROC AUC; the "
                                            "speculative draft_stop threshold with the most tokens per unit cost")
    common(p, by=False)
    p.add_argument("--draft-cost", type=float, default=None, metavar="R",
                   help="also recommend a speculative draft_stop rule: R = time of one draft-model step / one "
                        "large-model step, measured on your hardware (bench/e2e/run_draft_stop.py prints it)")
    p.add_argument("--num-draft", type=int, default=5, metavar="K", help="speculative K for --draft-cost (default 5)")
    p = sub.add_parser("scaling-law", help="fit CF = b - a * r**(-alpha), r = N_large / N_small")
    p.add_argument("files", nargs="+", metavar="ROWS",
                   help="CSV with large_params,small_params,cf; a JSON list of such objects; or trace files "
                        "whose meta has large_params/small_params")
    p.add_argument("--out", metavar="DIR", help="write scaling_law.png + table here")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of the one-line summary")


def run(args) -> int:
    import sys

    which = getattr(args, "analysis", None)
    if not which:
        print("fsgen analyze: choose one of collab, position, uncertainty, scaling-law", file=sys.stderr)
        return 2
    try:
        if which == "scaling-law":
            return _scaling(args)
        from fsgen_engine.analysis.samples import load_samples

        samples = load_samples(args.files)
        if which == "collab":
            from fsgen_engine.analysis.collab import analyze_collab

            analyze_collab(samples, args.out, args.by)
        elif which == "position":
            from fsgen_engine.analysis.position import analyze_position

            analyze_position(samples, args.out, args.by)
        elif which == "uncertainty":
            from fsgen_engine.analysis.uncertainty import analyze_uncertainty

            res = analyze_uncertainty(samples, args.out)
            print(res.recommendation())
            if args.draft_cost is not None:
                from fsgen_engine.analysis.uncertainty import write_draft_stop

                print(write_draft_stop(samples, args.num_draft, args.draft_cost, args.out).line())
    except (ValueError, FileNotFoundError) as exc:  # bad input: exit 2, as argparse's own errors
        print(f"fsgen analyze {which}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # the analysis itself failed (e.g. a fit that does not converge)
        print(f"fsgen analyze {which}: error: {exc}", file=sys.stderr)
        return 1
    if args.out:
        print(f"wrote {which} figure and tables to {args.out}", file=sys.stderr)
    return 0


def _scaling(args) -> int:
    import json

    from rich.console import Console

    from fsgen_engine.analysis.scaling import fit_scaling_law, load_rows, plot_scaling

    rows = load_rows(args.files)
    fit = fit_scaling_law(rows)
    if args.out:
        # The table goes to stderr so stdout stays exactly one line (or one JSON object).
        plot_scaling(rows, fit, args.out, echo=True, console=Console(stderr=True))
    if args.json:
        print(json.dumps(fit.to_dict()))
    else:
        print(fit.line())
    return 0
