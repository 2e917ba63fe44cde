"""Run a function on N gloo ranks (spawned processes) and collect rank 0's result: the harness of the
sharded-model tests. Real torch.distributed, no mocks."""
from __future__ import annotations

import pickle
import socket

import torch.multiprocessing as mp


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, size, port, fn, args, q):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
        out = fn(rank, size, *args)
        dist.destroy_process_group()
        if rank == 0:
            q.put(("ok", pickle.dumps(out)))
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        import traceback

        q.put(("error", f"rank {rank}: {exc!r}\n{traceback.format_exc()}"))


def run_ranks(size: int, fn, *args, timeout: float = 300.0):
    """``fn(rank, size, *args)`` on ``size`` ranks (``fn`` must be importable: a module-level function);
    returns rank 0's result (picklable, e.g. numpy arrays)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = _port()
    procs = [ctx.Process(target=_entry, args=(r, size, port, fn, args, q), daemon=True) for r in range(size)]
    for p in procs:
        p.start()
    try:
        kind, payload = q.get(timeout=timeout)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    if kind != "ok":
        raise AssertionError(payload)
    return pickle.loads(payload)
