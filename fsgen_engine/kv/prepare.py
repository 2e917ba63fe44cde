"""The KV side of one step: allocate slots for new tokens and build the ``ForwardBatch``.

All bookkeeping is host-side numpy; the device receives two packed buffers per step (one int64, one
int32) so a step costs two host-to-device copies whatever the batch size.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from fsgen_engine.core import ForwardBatch


def _logits_rows(logits, q_lens: np.ndarray, cu: np.ndarray) -> np.ndarray:
    """Row indices (into the N new tokens) whose logits the forward returns."""
    if logits is None:
        return np.zeros(0, dtype=np.int64)
    if logits == "last":
        return cu[1:] - 1
    if logits == "all":
        return np.arange(int(cu[-1]), dtype=np.int64)
    if isinstance(logits, tuple) and len(logits) == 2 and logits[0] == "last_n":
        n = int(logits[1])
        if n <= 0:
            raise ValueError(f"prepare: logits=('last_n', {n}) needs n >= 1")
        short = np.nonzero(q_lens < n)[0]
        if short.size:
            raise ValueError(f"prepare: logits=('last_n', {n}) but sequence #{int(short[0])} of the batch has only "
                             f"{int(q_lens[short[0]])} new token(s); feed at least {n} or ask for fewer")
        return (cu[1:, None] - n + np.arange(n)[None, :]).reshape(-1)
    raise ValueError(f"prepare: logits={logits!r} must be 'last', 'all', ('last_n', n) or None")


def _token_ids(new_token_ids: Sequence, device: torch.device) -> tuple[list[int], np.ndarray | torch.Tensor]:
    """Counts per sequence and the concatenated ids (numpy when all are host lists, else a device tensor)."""
    counts = [int(t.numel()) if isinstance(t, torch.Tensor) else len(t) for t in new_token_ids]
    if any(isinstance(t, torch.Tensor) for t in new_token_ids):
        parts = [t.reshape(-1).to(device=device, dtype=torch.long) if isinstance(t, torch.Tensor)
                 else torch.tensor(list(t), dtype=torch.long, device=device) for t in new_token_ids]
        return counts, torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long, device=device)
    flat = np.fromiter((int(x) for t in new_token_ids for x in t), dtype=np.int64, count=sum(counts))
    return counts, flat


def prepare_batch(pool, model_id, seq_ids: Sequence, new_token_ids: Sequence, *, logits="last",
                  page_table_width: int | None = None) -> ForwardBatch:
    """Allocate KV slots for ``new_token_ids[i]`` (list of ints or 1-D tensor, >= 1 token) of each
    sequence ``seq_ids[i]`` of model ``model_id`` and return the ``ForwardBatch`` of the step.

    ``logits``: ``"last"`` (one row per sequence), ``("last_n", n)`` (the last n tokens of each
    sequence, in order), ``"all"`` or ``None`` (no rows). ``page_table_width`` pads the page table to
    a fixed number of columns (CUDA graphs); by default it is the largest page count of the batch.
    Raises ``KVPoolExhausted`` (nothing changed) when the pool cannot hold the new tokens.
    """
    if len(seq_ids) != len(new_token_ids):
        raise ValueError(f"prepare: {len(seq_ids)} seq_ids but {len(new_token_ids)} token lists")
    if len(seq_ids) == 0:
        raise ValueError("prepare: empty batch; pass at least one sequence")
    device = torch.device(pool.specs[pool._model(model_id)].device)
    counts, ids = _token_ids(new_token_ids, device)
    if min(counts) < 1:
        i = counts.index(min(counts))
        raise ValueError(f"prepare: sequence {seq_ids[i]!r} has no new tokens; every sequence of a step needs >= 1")
    q_lens = np.asarray(counts, dtype=np.int64)
    cu = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(q_lens, out=cu[1:])
    rows = _logits_rows(logits, q_lens, cu)  # validate before allocating anything

    spans = pool.allocate(model_id, seq_ids, counts)
    S = pool.page_size
    tables = [pool.tables[model_id][s].pages for s in seq_ids]
    width = max(len(p) for p in tables)
    if page_table_width is not None:
        if page_table_width < width:
            raise ValueError(f"prepare: page_table_width={page_table_width} < {width} pages needed by the batch")
        width = page_table_width
    B, N = len(seq_ids), int(cu[-1])
    page_table = np.zeros((B, width), dtype=np.int32)
    for b, p in enumerate(tables):
        page_table[b, :len(p)] = p
    seq_lens = np.fromiter((e for _, e in spans), dtype=np.int64, count=B)
    starts = np.fromiter((s for s, _ in spans), dtype=np.int64, count=B)
    owner = np.repeat(np.arange(B), q_lens)
    positions = starts[owner] + (np.arange(N) - cu[:-1][owner])
    slots = page_table[owner, positions // S].astype(np.int64) * S + positions % S

    host64 = np.concatenate([positions, slots, rows.astype(np.int64)] +
                            ([ids] if isinstance(ids, np.ndarray) else []))
    host32 = np.concatenate([page_table.reshape(-1), seq_lens.astype(np.int32), cu.astype(np.int32)])
    pin = device.type == "cuda"
    d64 = _to_device(host64, device, pin)
    d32 = _to_device(host32, device, pin)
    M = rows.shape[0]
    positions_t, slots_t, rows_t = d64[:N], d64[N:2 * N], d64[2 * N:2 * N + M]
    ids_t = d64[2 * N + M:] if isinstance(ids, np.ndarray) else ids
    pt_t = d32[:B * width].view(B, width)
    return ForwardBatch(input_ids=ids_t, positions=positions_t, slot_mapping=slots_t, page_table=pt_t,
                        seq_lens=d32[B * width:B * width + B], cu_q_lens=d32[B * width + B:],
                        logits_indices=rows_t, max_q_len=int(q_lens.max()), max_seq_len=int(seq_lens.max()))


def _to_device(a: np.ndarray, device: torch.device, pin: bool) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a))
    if device.type == "cpu":
        return t
    if pin:
        t = t.pin_memory()
    return t.to(device, non_blocking=pin)
