"""The ``fsgen`` command.

Each subcommand lives in its own module of this package and defines ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported lazily (only the chosen
subcommand's heavy imports run), so ``fsgen --help`` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import shlex
import sys

# subcommand name -> (module, one-line help); the order is the order in `fsgen --help`.
SUBCOMMANDS = {
    "demo": ("fsgen_engine.cli.demo", "run the collaborative-decoding demo on the embedded default model"),
    "generate": ("fsgen_engine.cli.generate", "generate with a large/small model pair and a collaboration method"),
    "bench": ("fsgen_engine.cli.bench", "tokens/s harness: engine methods against HF transformers baselines"),
    "eval": ("fsgen_engine.cli.eval", "evaluate a method on a data set (gsm8k, mmlu_stem, mbpp, mtbench, math500)"),
    "sweep": ("fsgen_engine.cli.sweep", "speed-quality frontier: sweep routers/thresholds and methods (one or several model pairs; --ray)"),
    "analyze": ("fsgen_engine.cli.analyze", "FS-GEN analyses from trace files: collaboration, position, uncertainty, scaling law"),
    "train-router": ("fsgen_engine.cli.train_router", "fit a learned router from traces (scikit-learn)"),
    "plan": ("fsgen_engine.cli.plan", "plan a large/small pair on GPUs you do not have: memory, KV, communication, tokens/s"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fsgen",
        description="fsgen_engine: collaborative decoding between a small (fast) and a large (slow) language model.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            p.set_defaults(_missing=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    # the exact invocation, for result files (sys.argv is not it when main() is called in-process)
    args.command_line = " ".join(shlex.quote(a) for a in ["fsgen", *argv])
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if getattr(args, "_missing", False):
        parser.error(f"subcommand {args.command!r} is not available in this build")
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
