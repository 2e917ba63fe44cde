"""What rank 0 sends the other tensor-parallel ranks each step: a fixed header and the ``ForwardBatch``.

The header (``HEADER`` int64 numbers, built from host ints, so no device sync) says what to run:
the command, which loaded model and how many of its layers, whose KV cache, and the sizes of the
payload. The payload is every index tensor of the batch concatenated into one int64 tensor, so a step
costs two broadcasts whatever its size: rank 0 decides the page tables, and every rank writes the
same slots of its own heads' pages.
"""
from __future__ import annotations

import torch

from fsgen_engine.core import ForwardBatch

FORWARD, STOP, END_GENERATE = 1, 2, 3
HEADER = 15
# header slots (_COPIES: copy-on-write page copies rank 0's pool made since this cache's last forward;
# _ARGMAX: 1 = the forward returns greedy tokens over the first _LIMIT ids, 0 = logits)
(_CMD, _MODEL, _LAYERS, _CACHE, _N, _B, _M, _W, _MAXQ, _MAXS, _PAGES, _PAGE_SIZE, _COPIES, _ARGMAX,
 _LIMIT) = range(HEADER)


def header(cmd: int, device: torch.device, *, model: int = 0, layers: int = 0, cache: int = 0,
           batch: ForwardBatch | None = None, num_pages: int = 0, page_size: int = 0, copies: int = 0,
           argmax_limit: int | None = None) -> torch.Tensor:
    h = [0] * HEADER
    h[_CMD], h[_MODEL], h[_LAYERS], h[_CACHE] = cmd, model, layers, cache
    if batch is not None:
        h[_N], h[_B], h[_M] = batch.num_tokens, batch.batch_size, int(batch.logits_indices.shape[0])
        h[_W], h[_MAXQ], h[_MAXS] = int(batch.page_table.shape[1]), int(batch.max_q_len), int(batch.max_seq_len)
    h[_PAGES], h[_PAGE_SIZE], h[_COPIES] = num_pages, page_size, copies
    h[_ARGMAX], h[_LIMIT] = int(argmax_limit is not None), argmax_limit or 0
    return torch.tensor(h, dtype=torch.int64).to(device)


def payload(batch: ForwardBatch, copies: list[tuple[int, int]]) -> torch.Tensor:
    """The batch's index tensors and the page copies (sources, then destinations) as one int64 tensor
    (on the batch's device)."""
    parts = [batch.input_ids, batch.positions, batch.slot_mapping, batch.page_table.reshape(-1), batch.seq_lens,
             batch.cu_q_lens, batch.logits_indices]
    if copies:
        parts.append(torch.tensor([s for s, _ in copies] + [d for _, d in copies]).to(batch.input_ids.device))
    return torch.cat([p.to(torch.int64) for p in parts])


def payload_size(h: list[int]) -> int:
    N, B, M, W = h[_N], h[_B], h[_M], h[_W]
    return 3 * N + B * W + B + (B + 1) + M + 2 * h[_COPIES]


def unpack(h: list[int], flat: torch.Tensor) -> tuple[ForwardBatch, torch.Tensor, torch.Tensor]:
    """The ``ForwardBatch`` rank 0 ran and its page copies (source and destination pages, applied
    first), from the header (host list) and payload."""
    N, B, M, W, C = h[_N], h[_B], h[_M], h[_W], h[_COPIES]
    sizes = [N, N, N, B * W, B, B + 1, M, C, C]
    ids, pos, slots, table, lens, cu, rows, src, dst = torch.split(flat, sizes)
    return ForwardBatch(input_ids=ids, positions=pos, slot_mapping=slots,
                        page_table=table.reshape(B, W).to(torch.int32), seq_lens=lens.to(torch.int32),
                        cu_q_lens=cu.to(torch.int32), logits_indices=rows, max_q_len=h[_MAXQ],
                        max_seq_len=h[_MAXS]), src, dst


def fields(h: list[int]) -> dict:
    return {"cmd": h[_CMD], "model": h[_MODEL], "layers": h[_LAYERS], "cache": h[_CACHE],
            "num_pages": h[_PAGES], "page_size": h[_PAGE_SIZE],
            "output": "argmax" if h[_ARGMAX] else "logits", "vocab_limit": h[_LIMIT] if h[_ARGMAX] else None}
