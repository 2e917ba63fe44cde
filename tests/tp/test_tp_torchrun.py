"""Launched by torchrun (2 ranks, gloo), each rank building the same Engine: rank 0's outputs equal the
single-process engine's, and the other rank's generate returns []."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fsgen_engine import Engine, MethodOptions
from tests.tp.conftest import engine_kwargs

# one xdist worker runs the tensor-parallel tests in order: each spawns ranks of its own, and one
# spawned group per process is open at a time
pytestmark = pytest.mark.xdist_group("tp")

ROOT = Path(__file__).resolve().parents[2]


def test_torchrun_ranks_match_single_process(tp_folders, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(port), str(ROOT / "tests/tp/_torchrun_script.py"), tp_folders["large"],
           tp_folders["small"], str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(out.read_text())
    e = Engine(tp_folders["large"], tp_folders["small"], **engine_kwargs())
    want = [[o.token_ids for o in e.generate([[1, 5, 6, 7], [1, 9, 10, 11, 12, 13, 14, 15, 16]], method=m,
                                            options=MethodOptions(num_draft_tokens=3), max_new_tokens=8,
                                            progress=False)]
            for m in ("large", "speculative")]
    assert got == want
