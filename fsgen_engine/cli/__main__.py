"""``python -m fsgen_engine.cli ...`` = the ``fsgen`` command (where the console script is not on PATH)."""
import sys

from fsgen_engine.cli import main

sys.exit(main())
