"""``fsgen generate --tp 2``: the same traces as the single-process run; a bad --tp is exit code 2 with
the reason, before any process starts."""
from __future__ import annotations

import json
import multiprocessing

import pytest

from fsgen_engine.cli import main

# one xdist worker runs the tensor-parallel tests in order: each spawns ranks of its own, and one
# spawned group per process is open at a time
pytestmark = pytest.mark.xdist_group("tp")


def _tokens(path) -> list:
    with open(path) as f:
        return [json.loads(line)["token_ids"] for line in f if line.strip()]


def test_generate_tp2_equals_single(tp_folders, tmp_path, capsys):
    common = ["generate", "--large", tp_folders["large"], "--small", tp_folders["small"], "--device", "cpu",
              "--method", "speculative", "--num-draft-tokens", "3", "--prompt", "w5 w6 w7", "--prompt", "w9 w10",
              "--max-new-tokens", "8", "--quiet", "--kv-memory", "64MiB"]
    assert main(common + ["--out", str(tmp_path / "one.jsonl")]) == 0
    assert main(common + ["--tp", "2", "--out", str(tmp_path / "tp2.jsonl")]) == 0
    one, tp2 = _tokens(tmp_path / "one.jsonl"), _tokens(tmp_path / "tp2.jsonl")
    assert one == tp2 and len(one) == 2 and all(len(t) == 8 for t in one)
    assert not multiprocessing.active_children()


def test_generate_bad_tp_is_a_user_error(tp_folders, capsys):
    rc = main(["generate", "--large", tp_folders["large"], "--small", tp_folders["small"], "--device", "cpu",
               "--prompt", "w5", "--tp", "3", "--quiet"])
    assert rc == 2
    assert "cannot be split over 3" in capsys.readouterr().err
