"""Tensor-parallel lifetime and faults: a killed worker is a clear error within seconds and leaves no
process behind; close() and the context manager stop the workers; bad settings fail before any process
starts or any weight is read."""
from __future__ import annotations

import multiprocessing
import os
import threading
import time

import pytest

from fsgen_engine import Engine, MethodOptions
from fsgen_engine.tp import TPWorkerError
from tests.tp.conftest import engine_kwargs

# one xdist worker runs the tensor-parallel tests in order: each spawns ranks of its own, and one
# spawned group per process is open at a time
pytestmark = pytest.mark.xdist_group("tp")

PROMPTS = [[1, 5, 6, 7], [1, 20, 21]]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_killed_worker_is_a_clear_error_and_nothing_survives(tp_folders):
    e = Engine(tp_folders["large"], tp_folders["small"], tensor_parallel=2, **engine_kwargs())
    pids = [p.pid for p in e._tp.workers]
    killer = threading.Timer(1.0, lambda: os.kill(pids[0], 9))
    killer.start()
    t0 = time.monotonic()
    with pytest.raises(TPWorkerError, match=r"rank 1 was killed by SIGKILL") as info:
        for _ in range(200):   # long enough that the kill lands mid-generation
            e.generate(PROMPTS, method="speculative", options=MethodOptions(num_draft_tokens=3), max_new_tokens=40,
                       progress=False)
    killer.join()
    assert time.monotonic() - t0 < 60, "the failure took too long to surface"
    assert "engine is closed" in str(info.value)
    assert not any(_alive(p) for p in pids) and not multiprocessing.active_children()
    with pytest.raises(TPWorkerError, match="closed"):
        e.generate(PROMPTS, method="large", max_new_tokens=2, progress=False)
    e.close()   # idempotent after a failure


def test_close_and_context_manager_stop_the_workers(tp_folders):
    with Engine(tp_folders["large"], tp_folders["small"], tensor_parallel=2, **engine_kwargs()) as e:
        pids = [p.pid for p in e._tp.workers]
        assert all(_alive(p) for p in pids)
        assert len(e.generate(PROMPTS, method="large", max_new_tokens=3, progress=False)) == 2
    assert not any(_alive(p) for p in pids)
    with pytest.raises(TPWorkerError, match="closed"):
        e.generate(PROMPTS, method="large", max_new_tokens=2, progress=False)
    # the group is released: a new tensor-parallel engine can start in this process
    with Engine(tp_folders["large"], tp_folders["small"], tensor_parallel=2, **engine_kwargs()) as e2:
        assert e2.generate(PROMPTS, method="large", max_new_tokens=2, progress=False)


def test_exception_in_the_driver_leaves_no_worker(tp_folders):
    pids = []
    with pytest.raises(ZeroDivisionError):
        with Engine(tp_folders["large"], tp_folders["small"], tensor_parallel=2, **engine_kwargs()) as e:
            pids = [p.pid for p in e._tp.workers]
            1 / 0
    assert pids and not any(_alive(p) for p in pids)


@pytest.mark.parametrize("kwargs,match", [
    (dict(tensor_parallel=3), "cannot be split over 3"),
    (dict(tensor_parallel=0), "tensor_parallel=0 must be an integer >= 1"),
    (dict(tensor_parallel=2, small_tensor_parallel=3), "small_tensor_parallel=3"),
    (dict(tensor_parallel=True), "tensor_parallel=True"),
])
def test_bad_settings_fail_before_any_process_starts(tp_folders, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Engine(tp_folders["large"], tp_folders["small"], **kwargs, **engine_kwargs())
    assert not multiprocessing.active_children()


def test_early_exit_beside_a_sharded_large_needs_it_sharded_too(tp_folders):
    with pytest.raises(ValueError, match="small_tensor_parallel=2"):
        Engine(tp_folders["large"], "early_exit:2", tensor_parallel=2, **engine_kwargs())


def test_model_objects_cannot_be_sharded(tp_folders):
    from fsgen_engine.models import load_model

    m, _ = load_model(tp_folders["large"])
    with pytest.raises(ValueError, match="local HF folder or a GGUF path"):
        Engine(m, tp_folders["small"], tensor_parallel=2, **engine_kwargs())


def test_nccl_on_cpu_is_refused(tp_folders, monkeypatch):
    monkeypatch.setenv("FSGEN_TP_BACKEND", "nccl")
    with pytest.raises(ValueError, match="FSGEN_TP_BACKEND=nccl needs CUDA"):
        Engine(tp_folders["large"], tp_folders["small"], tensor_parallel=2, **engine_kwargs())
    assert not multiprocessing.active_children()


def test_bad_timeout_setting(tp_folders, monkeypatch):
    monkeypatch.setenv("FSGEN_TP_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="FSGEN_TP_TIMEOUT='soon'"):
        Engine(tp_folders["large"], tp_folders["small"], tensor_parallel=2, **engine_kwargs())


def test_more_ranks_than_gpus_is_refused():
    import torch

    from fsgen_engine.tp.runtime import rank_devices

    visible = torch.cuda.device_count()
    with pytest.raises(ValueError, match=f"tensor_parallel={visible + 1} needs {visible + 1} GPUs from cuda:0 but "
                                         f"{visible} are visible"):
        rank_devices(torch.device("cuda", 0), visible + 1)
    assert rank_devices(torch.device("cpu"), 3) == ["cpu"] * 3


def test_a_second_open_engine_is_refused(tp_folders):
    with Engine(tp_folders["large"], tp_folders["small"], tensor_parallel=2, **engine_kwargs()) as e:
        with pytest.raises(RuntimeError, match="another tensor-parallel engine of this process is open"):
            Engine(tp_folders["large"], tp_folders["small"], tensor_parallel=2, **engine_kwargs())
        assert e.generate(PROMPTS, method="large", max_new_tokens=2, progress=False)   # the first one still works
