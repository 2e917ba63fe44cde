"""A minimal paged-KV driver for model tests (independent of fsgen_engine.kv's pool API).

Pages are handed out from a random permutation so sequences never sit in contiguous memory, and
ForwardBatch fields are built from first principles (see core/forward_batch.py).
"""
from __future__ import annotations

import torch

from fsgen_engine.kv.cache import ModelKVCache
from fsgen_engine.core import ForwardBatch


class PagedSeqs:
    def __init__(self, model, num_pages: int = 64, page_size: int = 4, seed: int = 0):
        self.model = model
        self.page_size = page_size
        self.kv = ModelKVCache.allocate(model.num_layers, num_pages, page_size, model.num_kv_heads, model.head_dim,
                                        model.dtype, model.device)
        g = torch.Generator().manual_seed(seed)
        self.free = torch.randperm(num_pages, generator=g).tolist()
        self.pages: dict[int, list[int]] = {}
        self.tokens: dict[int, list[int]] = {}

    def batch(self, new: dict[int, list[int]], logits: str = "last") -> ForwardBatch:
        """Append ``new[seq]`` tokens to each sequence; logits rows: 'last' per sequence or 'all' new rows."""
        S = self.page_size
        ids, pos, slots, seq_lens, cu, rows = [], [], [], [], [0], []
        for sid, toks in new.items():
            hist = self.tokens.setdefault(sid, [])
            pages = self.pages.setdefault(sid, [])
            start = len(hist)
            end = start + len(toks)
            while len(pages) * S < end:
                pages.append(self.free.pop())
            for j, t in enumerate(toks):
                p = start + j
                ids.append(t)
                pos.append(p)
                slots.append(pages[p // S] * S + p % S)
            hist.extend(toks)
            n0 = cu[-1]
            cu.append(n0 + len(toks))
            seq_lens.append(end)
            rows.extend(range(n0, n0 + len(toks)) if logits == "all" else [n0 + len(toks) - 1])
        width = max(len(self.pages[s]) for s in new)
        table = [self.pages[s] + [0] * (width - len(self.pages[s])) for s in new]
        dev = self.model.device
        lens = [cu[i + 1] - cu[i] for i in range(len(new))]
        return ForwardBatch(
            input_ids=torch.tensor(ids, dtype=torch.int64, device=dev),
            positions=torch.tensor(pos, dtype=torch.int64, device=dev),
            slot_mapping=torch.tensor(slots, dtype=torch.int64, device=dev),
            page_table=torch.tensor(table, dtype=torch.int32, device=dev),
            seq_lens=torch.tensor(seq_lens, dtype=torch.int32, device=dev),
            cu_q_lens=torch.tensor(cu, dtype=torch.int32, device=dev),
            logits_indices=torch.tensor(rows, dtype=torch.int64, device=dev),
            max_q_len=max(lens), max_seq_len=max(seq_lens))

    def step(self, new: dict[int, list[int]], logits: str = "last") -> torch.Tensor:
        return self.model.forward(self.batch(new, logits), self.kv)


def greedy(model, prompt_ids: list[int], n: int, page_size: int = 16) -> list[int]:
    """Greedy continuation of one prompt through paged KV (prefill, then one token per step)."""
    ps = PagedSeqs(model, num_pages=(len(prompt_ids) + n) // page_size + 2, page_size=page_size)
    logits = ps.step({0: list(prompt_ids)})
    out = []
    for _ in range(n):
        t = int(logits[0].argmax())
        out.append(t)
        logits = ps.step({0: [t]})
    return out
