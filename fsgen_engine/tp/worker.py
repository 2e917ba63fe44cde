"""The ranks > 0 of a tensor-parallel engine: load their shards, then replay rank 0's forwards.

A spawned worker (``worker_main``) and a ``torchrun`` rank > 0 (``Engine.generate`` on that rank) run
the same loop, :meth:`ShardServer.serve`: receive a header, and for ``FORWARD`` the batch, then run the
shard's forward over the rank's own KV pages; its collectives pair with rank 0's. Nothing of the
result stays here: rank 0 holds the gathered logits.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import traceback

import torch

from fsgen_engine.kv.cache import copy_pages
from fsgen_engine.tp import wire

ROLES = ("large", "small", "small_ft")   # model / cache indices in the header


class ShardServer:
    """One rank's shards (``{model index: CausalLM}``) and KV caches (``{cache index: ModelKVCache}``)."""

    def __init__(self, models: dict, device: torch.device):
        self.models, self.device = models, device
        self.caches: dict[int, object] = {}
        self._views: dict[tuple[int, int], object] = {}

    def model(self, index: int, layers: int):
        base = self.models[index]
        if layers == base.num_layers:
            return base
        key = (index, layers)
        if key not in self._views:
            self._views[key] = base.early_exit(layers)
        return self._views[key]

    def cache(self, index: int, model, num_pages: int, page_size: int):
        from fsgen_engine.kv.cache import ModelKVCache

        kv = self.caches.get(index)
        if kv is None or kv.num_layers < model.num_layers or kv.k[0].shape[0] != num_pages or kv.page_size != page_size:
            kv = ModelKVCache.allocate(model.num_layers, num_pages, page_size, model.num_kv_heads, model.head_dim,
                                       model.dtype, model.device)
            self.caches[index] = kv
        return kv

    def serve(self, until_end: bool) -> int:
        """Replay forwards until ``STOP`` (or ``END_GENERATE`` when ``until_end``); returns that command."""
        import torch.distributed as dist

        buf = torch.empty(wire.HEADER, dtype=torch.int64, device=self.device)
        while True:
            dist.broadcast(buf, src=0)
            h = buf.tolist()
            f = wire.fields(h)
            if f["cmd"] == wire.STOP or (until_end and f["cmd"] == wire.END_GENERATE):
                return f["cmd"]
            if f["cmd"] != wire.FORWARD:
                continue
            flat = torch.empty(wire.payload_size(h), dtype=torch.int64, device=self.device)
            dist.broadcast(flat, src=0)
            batch, src, dst = wire.unpack(h, flat)
            model = self.model(f["model"], f["layers"])
            kv = self.cache(f["cache"], model, f["num_pages"], f["page_size"])
            if src.numel():
                copy_pages(kv, src, dst)   # rank 0's copy-on-write copies, on this rank's heads
            model.forward(batch, kv, output=f["output"], vocab_limit=f["vocab_limit"])


def load_shards(loads: dict, rank: int, size: int, dtype: torch.dtype, device: torch.device) -> dict:
    """``{model index: this rank's shard}`` of the models in ``loads`` (``{index: path}``)."""
    from fsgen_engine.models.checks import load_model_checked
    from fsgen_engine.models.tensor_parallel import TPShard

    shard = TPShard(rank, size)
    return {int(i): load_model_checked(ROLES[int(i)], path, dtype=dtype, device=device, tp=shard, tokenizer=False)[0]
            for i, path in loads.items()}


def die_with_parent() -> None:
    """SIGKILL this process when its parent dies (Linux), so a killed driver leaves no worker behind.

    The kernel ties this to the thread that spawned the worker: an engine built in a thread that then
    exits loses its workers (build it in a thread that lives as long as the engine, e.g. the main one)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no prctl
            pass


def worker_main(rank: int, cfg: dict, conn) -> None:
    """Entry point of a spawned rank: join the group, load the shards, report, serve until STOP."""
    die_with_parent()
    if os.getppid() != cfg["parent_pid"]:
        os._exit(1)   # the driver died before the line above
    import torch.distributed as dist
    from datetime import timedelta

    try:
        torch.set_num_threads(cfg["threads"])
        device = torch.device(cfg["devices"][rank])
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(cfg["backend"], init_method=cfg["init_method"], rank=rank,
                                world_size=cfg["size"], timeout=timedelta(seconds=cfg["timeout_s"]))
        models = load_shards(cfg["loads"], rank, cfg["size"], getattr(torch, cfg["dtype"]), device)
        conn.send(("ready", rank, ""))
        ShardServer(models, device).serve(until_end=False)
        conn.send(("stopped", rank, ""))
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to the driver, then the rank exits
        try:
            conn.send(("error", rank, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"))
        except (OSError, ValueError):
            pass
        os._exit(1)
    try:
        dist.destroy_process_group()
    finally:
        os._exit(0)
