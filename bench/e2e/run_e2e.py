#!/usr/bin/env python
"""End-to-end tokens/s harness: a thin wrapper around ``fsgen bench`` (see bench/e2e/README.md).

    python bench/e2e/run_e2e.py --models real --batch-sizes 1 4 --max-new-tokens 32 --runs 2
"""
import sys

from fsgen_engine.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
