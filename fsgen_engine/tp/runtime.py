"""Rank 0's side of a tensor-parallel engine: the process group, the worker processes, the per-step
broadcast, fault reporting and shutdown.

Two ways to get ranks:

- spawned (default): the engine starts ``size - 1`` worker processes (``torch.multiprocessing`` spawn),
  rank 0 being the calling process; NCCL on CUDA devices (rank r on ``cuda:(i + r)``), gloo on the CPU
  (``FSGEN_TP_BACKEND`` overrides). Workers die with the driver (parent-death signal, daemon
  processes) and on ``close()``.
- ``torchrun``: every rank runs the same script and builds the same ``Engine``; the default process
  group (``env://``, or one the script initialised) must have ``tensor_parallel`` ranks. Rank 0 drives;
  on the other ranks ``Engine.generate`` serves rank 0's forwards and returns ``[]``.

Collectives run with a timeout (``FSGEN_TP_TIMEOUT`` seconds, 120 by default), so a stuck rank cannot
hang the driver forever; a rank that dies breaks its connections and the driver's next collective
fails at once. Either way :class:`TPWorkerError` names the rank and the cause, every worker is
stopped and the engine is closed.
"""
from __future__ import annotations

import os
import signal
import socket
import threading
import time
from datetime import timedelta

import torch

from fsgen_engine.tp import wire
from fsgen_engine.tp.worker import ROLES, ShardServer, worker_main

STARTUP_TIMEOUT_S = 600.0    # joining the group and loading the shards
_active: list = []           # the spawned runtime of this process (one at a time: it owns the default group)


class TPWorkerError(RuntimeError):
    """A tensor-parallel rank failed (died, raised, or timed out); the engine is closed."""


def _timeout_s() -> float:
    raw = os.environ.get("FSGEN_TP_TIMEOUT", "120")
    try:
        v = float(raw)
    except ValueError:
        v = -1.0
    if not v > 0:
        raise ValueError(f"FSGEN_TP_TIMEOUT={raw!r} must be a positive number of seconds (collective timeout)")
    return v


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_devices(device: torch.device, size: int) -> list[str]:
    """The device of each rank: the CPU for all, or consecutive GPUs from ``device``'s index."""
    if device.type == "cpu":
        return ["cpu"] * size
    if device.type != "cuda":
        raise ValueError(f"tensor_parallel={size}: device {device} is not supported; use 'cpu' or 'cuda'")
    first = device.index or 0
    count = torch.cuda.device_count()
    if first + size > count:
        raise ValueError(f"tensor_parallel={size} needs {size} GPUs from cuda:{first} but {count} are visible; "
                         f"lower tensor_parallel or start from a lower device index")
    return [f"cuda:{first + r}" for r in range(size)]


def backend_for(device: torch.device) -> str:
    name = os.environ.get("FSGEN_TP_BACKEND", "nccl" if device.type == "cuda" else "gloo").lower()
    if name not in ("gloo", "nccl"):
        raise ValueError(f"FSGEN_TP_BACKEND={name!r}: use 'gloo' or 'nccl'")
    if name == "nccl" and device.type != "cuda":
        raise ValueError(f"FSGEN_TP_BACKEND=nccl needs CUDA devices but the engine runs on {device}; use gloo on "
                         f"the CPU (the default)")
    return name


class TPRuntime:
    """The tensor-parallel group of one engine (see the module docstring).

    ``loads``: ``{model index: path}`` of the sharded models (``worker.ROLES`` order); ``rank``/``size``;
    ``device``: this rank's device; ``is_driver``: rank 0.
    """

    def __init__(self, size: int, device: torch.device, dtype: torch.dtype, loads: dict[int, str]):
        import torch.distributed as dist

        self.size, self.loads, self.timeout_s = size, dict(loads), _timeout_s()
        self.workers, self.conns, self.spawned, self.closed = [], [], False, False
        self._errors: dict[int, str] = {}   # rank -> the traceback it reported
        self.dirty = False           # a step began and did not finish: the ranks are out of step
        if _active:   # checked first: its process group would otherwise read as a torchrun launch
            raise RuntimeError("another tensor-parallel engine of this process is open; close() it first (one "
                               "spawned group per process)")
        self.torchrun = dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.torchrun:
            self._join_torchrun(device)
        else:
            self._spawn(device, dtype)

    # ------------------------------------------------------------------ start
    def _join_torchrun(self, device: torch.device) -> None:
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = backend_for(device)
            dist.init_process_group(backend, init_method="env://", timeout=timedelta(seconds=self.timeout_s))
        if dist.get_world_size() != self.size:
            raise ValueError(f"tensor_parallel={self.size} but the process group has {dist.get_world_size()} ranks "
                             f"(torchrun --nproc-per-node); they must be equal")
        self.rank = dist.get_rank()
        if device.type == "cuda":
            local = int(os.environ.get("LOCAL_RANK", self.rank))
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        self.device = device

    def _spawn(self, device: torch.device, dtype: torch.dtype) -> None:
        import torch.multiprocessing as mp

        devices = rank_devices(device, self.size)
        backend = backend_for(device)
        self.rank, self.device = 0, torch.device(devices[0])
        cfg = {"size": self.size, "backend": backend, "init_method": f"tcp://127.0.0.1:{_free_port()}",
               "timeout_s": self.timeout_s, "devices": devices, "dtype": str(dtype).replace("torch.", ""),
               "loads": {str(k): v for k, v in self.loads.items()}, "parent_pid": os.getpid(),
               "threads": max(1, torch.get_num_threads() // self.size)}
        ctx = mp.get_context("spawn")
        self.spawned = True
        _active.append(self)
        try:
            for r in range(1, self.size):
                reader, writer = ctx.Pipe(duplex=False)
                p = ctx.Process(target=worker_main, args=(r, cfg, writer), daemon=True, name=f"fsgen-tp-rank{r}")
                p.start()
                writer.close()
                self.workers.append(p)
                self.conns.append(reader)
            err: list = []
            t = threading.Thread(target=self._init_group, args=(backend, cfg, err), daemon=True)
            t.start()
            self._wait(lambda: not t.is_alive(), "joining the process group")
            if err:
                raise err[0]
        except BaseException:
            self._kill_workers()
            raise

    def _init_group(self, backend, cfg, err) -> None:
        import torch.distributed as dist

        try:
            dist.init_process_group(backend, init_method=cfg["init_method"], rank=0, world_size=self.size,
                                    timeout=timedelta(seconds=self.timeout_s))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            err.append(exc)

    def wait_ready(self) -> None:
        """Block until every spawned worker has loaded its shards (or raise naming the one that failed)."""
        ready: set[int] = set()

        def done() -> bool:
            for r, c in enumerate(self.conns, start=1):
                while r not in ready and c.poll():
                    kind, _, text = c.recv()
                    if kind == "ready":
                        ready.add(r)
                    elif kind == "error":
                        self._errors[r] = text
            return len(ready) == len(self.conns)

        self._wait(done, "loading the model shards")

    def _wait(self, done, what: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not done():
            bad = self._dead_workers()
            if bad:
                self._kill_workers()
                raise TPWorkerError(f"tensor-parallel start-up failed while {what}: {bad}")
            if time.monotonic() > deadline:
                self._kill_workers()
                raise TPWorkerError(f"tensor-parallel start-up timed out after {STARTUP_TIMEOUT_S:.0f} s while {what}")
            time.sleep(0.02)

    # ------------------------------------------------------------------ faults
    def _drain(self) -> None:
        for r, c in enumerate(self.conns, start=1):
            try:
                while c.poll():
                    kind, _, text = c.recv()
                    if kind == "error":
                        self._errors[r] = text
            except (EOFError, OSError):
                pass

    def _dead_workers(self) -> str:
        """'' when every worker lives, else which ranks died and why."""
        self._drain()
        out = []
        for r, p in enumerate(self.workers, start=1):
            if p.exitcode is not None or r in self._errors:
                out.append(f"rank {r} {self._cause(r, p)}")
        return "; ".join(out)

    def _cause(self, r: int, p) -> str:
        text = self._errors.get(r)
        if text:
            return f"raised {text.strip().splitlines()[0]}"
        code = p.exitcode
        if code is None:
            return "is alive but did not answer (a collective timed out)"
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (killed, e.g. by the out-of-memory killer)" if -code == signal.SIGKILL else ""
            return f"was killed by {name}{hint}"
        return f"exited with code {code}"

    def fail(self, exc: BaseException) -> TPWorkerError:
        """The error to raise after a failed step: which rank failed and why; stops every worker."""
        deadline = time.monotonic() + (0.0 if isinstance(exc, KeyboardInterrupt) else 3.0)
        while time.monotonic() < deadline and not self._dead_workers():
            time.sleep(0.05)   # a dying worker's report / exit reaches us within moments
        bad = self._dead_workers()
        self._kill_workers()
        self._close_group()
        if bad:
            return TPWorkerError(f"tensor-parallel worker failed: {bad}; the engine is closed, create a new one")
        return TPWorkerError(f"tensor-parallel step failed on rank 0 ({type(exc).__name__}: {exc}); the engine is "
                             f"closed, create a new one")

    # ------------------------------------------------------------------ steps
    def check_open(self) -> None:
        if self.closed:
            raise TPWorkerError("this tensor-parallel engine is closed (close() was called or a rank failed); "
                                "create a new Engine")

    def send_forward(self, model: int, layers: int, cache: int, batch, num_pages: int, page_size: int,
                     copies: list, argmax_limit: int | None = None) -> None:
        import torch.distributed as dist

        h = wire.header(wire.FORWARD, self.device, model=model, layers=layers, cache=cache, batch=batch,
                        num_pages=num_pages, page_size=page_size, copies=len(copies), argmax_limit=argmax_limit)
        dist.broadcast(h, src=0)
        dist.broadcast(wire.payload(batch, copies), src=0)

    def serve(self, models: dict) -> None:
        """Rank > 0 under torchrun: replay rank 0's forwards until its generate ends."""
        if not hasattr(self, "_server"):
            self._server = ShardServer(models, self.device)
        self._server.serve(until_end=True)

    def end_generate(self) -> None:
        """Rank 0 under torchrun: release the other ranks' ``generate``."""
        import torch.distributed as dist

        if self.torchrun and not self.closed and not self.dirty:
            dist.broadcast(wire.header(wire.END_GENERATE, self.device), src=0)

    # ------------------------------------------------------------------ stop
    def close(self) -> None:
        """Stop the workers (a STOP broadcast when the ranks are in step, else SIGKILL) and leave the group."""
        if self.closed:
            return
        self.closed = True
        if self.spawned:
            if not self.dirty and not self._dead_workers():
                try:
                    import torch.distributed as dist

                    dist.broadcast(wire.header(wire.STOP, self.device), src=0)
                except Exception:  # noqa: BLE001 - a dead peer: killed below
                    pass
                for p in self.workers:
                    p.join(timeout=10)
            self._kill_workers()
            self._close_group()

    def _kill_workers(self) -> None:
        for p in self.workers:
            if p.exitcode is None:
                p.kill()
        for p in self.workers:
            p.join(timeout=10)
        if self in _active:
            _active.remove(self)

    def _close_group(self) -> None:
        self.closed = True
        if not self.spawned:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # noqa: BLE001 - a broken group: nothing left to release
                pass

    def __repr__(self) -> str:
        return f"TPRuntime(size={self.size}, rank={self.rank}, device={self.device}, closed={self.closed})"


def role_index(role: str) -> int:
    return ROLES.index(role)
