"""Step primitives every method is built from.

``StepRunner.extend(model_id, rows, ...)`` feeds each row's tokens that model has not seen yet (its
KV lags: a prompt, one new token, or a catch-up over every token since its last call), optionally
followed by device-resident tokens (speculative drafts, never copied to the host), and returns the
logits of the last ``n`` positions of each row, ``[B, n, V]`` float32 (``V`` = the vocabulary shared
by all models: padding rows are dropped). ``to_host`` reads a step's results in one device->host
copy. (Token choice: ``runtime/sampler.py``.)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from fsgen_engine.config import TP_MERGE_MIN_BYTES, env_tp_logits



class StepRunner:
    """Executes model forwards over the shared KV pool for a set of rows."""

    def __init__(self, models: dict, pool, vocab: int, device: torch.device, graphs: dict | None = None):
        self.models = models
        self.graphs = graphs or {}   # model id -> runtime.cuda_graphs.GraphedForward (uniform steps)
        self.pool = pool
        self.vocab = int(vocab)
        self.device = torch.device(device)
        self._pin = self.device.type == "cuda"

    # -------------------------------------------------------------- forward
    def merge_argmax(self, model_id: str, positions: int) -> bool:
        """Whether a greedy step over ``positions`` (rows x logits per row) of ``model_id`` should ask for
        ``extend(..., output="argmax")``: only for a tensor-parallel model, whose ranks then all-gather
        ``positions`` (max, id) pairs instead of ``positions x V`` logits; ``FSGEN_TP_LOGITS`` (auto:
        above ``TP_MERGE_MIN_BYTES`` of logits per step, where merging measured faster)."""
        if getattr(self.models[model_id], "tp_size", 1) <= 1:
            return False
        mode = env_tp_logits()
        return mode == "merge" or (mode == "auto" and positions * self.vocab * 4 > TP_MERGE_MIN_BYTES)

    def extend(self, model_id: str, rows: Sequence, *, tail: torch.Tensor | None = None,
               tail_counts: Sequence[int] | None = None, n_logits: int | Sequence[int] = 1,
               output: str = "logits") -> torch.Tensor:
        """Feed ``rows[b].tokens[kv_len:]`` then ``tail[b, :tail_counts[b]]`` (device ``[B, E]`` int64)
        for every row; return logits ``[B, max(n), V]``: entry ``j`` of row ``b`` is position
        ``fed_b - n_b + min(j, n_b - 1)`` of its fed tokens (short rows repeat their last position).
        ``output="argmax"`` (a tensor-parallel model only, see ``merge_argmax``): the greedy tokens
        ``[B, max(n)]`` int64 of those positions instead (NaN never chosen, ties to the lowest id)."""
        pool = self.pool
        B = len(rows)
        seqs = [r.seq_id for r in rows]
        host = [r.unseen(pool.seq_len(model_id, r.seq_id)) for r in rows]   # the KV lag rule (runtime/rows.py)
        if tail is not None:
            E = int(tail.shape[1])
            tc = list(tail_counts) if tail_counts is not None else [E] * B
            lists = [h + [0] * c for h, c in zip(host, tc)]
        else:
            tc = None
            lists = host
        uniform_last = isinstance(n_logits, int) and n_logits == 1
        batch = pool.prepare(model_id, seqs, lists, logits="last" if uniform_last else None)
        ns = [n_logits] * B if isinstance(n_logits, int) else [int(n) for n in n_logits]
        nmax = max(ns)
        fed = np.fromiter((len(x) for x in lists), dtype=np.int64, count=B)
        cu = np.zeros(B + 1, dtype=np.int64)
        np.cumsum(fed, out=cu[1:])
        parts = []
        if tc is not None:
            hl = np.fromiter((len(h) for h in host), dtype=np.int64, count=B)
            tca = np.asarray(tc, dtype=np.int64)
            owner = np.repeat(np.arange(B), tca)
            j = np.arange(int(tca.sum())) - np.repeat(np.cumsum(tca) - tca, tca)
            dst = cu[:-1][owner] + hl[owner] + j
            src = owner * E + j
            parts += [dst, src]
        if not uniform_last:
            na = np.asarray(ns, dtype=np.int64)
            if (na > fed).any() or (na < 1).any():
                raise ValueError(f"extend: asked for {ns} logits but rows feed {fed.tolist()} tokens")
            jj = np.minimum(np.arange(nmax)[None, :], na[:, None] - 1)
            rows_idx = (cu[1:] - na)[:, None] + jj
            parts.append(rows_idx.reshape(-1))
        if parts:
            dev = self._h2d(np.concatenate(parts))
            off = 0
            if tc is not None:
                n = int(sum(tc))
                d, s = dev[:n], dev[n:2 * n]
                off = 2 * n
                batch.input_ids[d] = tail.reshape(-1)[s]
            if not uniform_last:
                batch.logits_indices = dev[off:]
        if output == "argmax":
            return self.models[model_id].forward(batch, pool.cache(model_id), output="argmax",
                                                 vocab_limit=self.vocab).view(B, nmax)
        graph = self.graphs.get(model_id)
        q = int(fed[0])
        if graph is not None and (fed == q).all() and all(n == nmax for n in ns) and graph.accepts(batch, q, nmax):
            logits = graph.run(batch, q, nmax)
        else:
            logits = self.models[model_id].forward(batch, pool.cache(model_id))
        return logits.view(B, nmax, -1)[..., :self.vocab]

    def _h2d(self, a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))
        if self.device.type == "cpu":
            return t
        if self._pin:
            t = t.pin_memory()
        return t.to(self.device, non_blocking=self._pin)

    def tensor(self, values, dtype=torch.int64) -> torch.Tensor:
        """A small host list on the device (pinned, non-blocking)."""
        t = torch.tensor(values, dtype=dtype)
        if self.device.type == "cpu":
            return t
        return t.pin_memory().to(self.device, non_blocking=True) if self._pin else t.to(self.device)

    # -------------------------------------------------------------- KV bookkeeping
    def truncate(self, rows: Sequence, valid: Sequence[int], model_ids: Sequence[str]) -> None:
        """Each model keeps at most ``valid[b]`` tokens of row b (drop fed-but-rejected tokens)."""
        for m in model_ids:
            for r, v in zip(rows, valid):
                n = self.pool.seq_len(m, r.seq_id)
                if n > v:
                    self.pool.truncate(m, r.seq_id, v)


def to_host(*tensors: torch.Tensor) -> list[np.ndarray]:
    """Read several ``[B, ...]`` tensors with one device->host copy (float64 keeps int64 ids exact)."""
    B = tensors[0].shape[0]
    flat = [t.reshape(B, -1).to(torch.float64) for t in tensors]
    host = torch.cat(flat, dim=1).cpu().numpy()
    out, off = [], 0
    for t, f in zip(tensors, flat):
        w = f.shape[1]
        out.append(host[:, off:off + w].reshape(t.shape))
        off += w
    return out
