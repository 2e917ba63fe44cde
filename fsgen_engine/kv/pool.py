"""KVPool: the engine's paged KV memory shared by all its models.

One ``PageAllocator`` (one page size, one free list) serves every model; each model owns a
``ModelKVCache`` (per-layer K/V ``[num_pages, page_size, Hkv, D]``) indexed by the same page ids, and
every (model, sequence) pair has a ``PageTable`` (page ids in order + KV length). Page tables live on
the host; ``prepare`` (kv/prepare.py) turns them into the device tensors of one forward step.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Hashable, Sequence

import torch

from fsgen_engine.config import env_kv_memory, env_page_size, parse_memory
from fsgen_engine.kv.allocator import PageAllocator
from fsgen_engine.kv.cache import ModelKVCache, copy_pages

ModelId = Hashable
SeqId = Hashable


@dataclass(frozen=True)
class KVModelSpec:
    """What a model needs from the pool: its K/V geometry, dtype and device."""

    num_layers: int
    num_kv_heads: int
    head_dim: int
    dtype: torch.dtype = torch.float32
    device: torch.device | str = "cpu"

    def bytes_per_page(self, page_size: int) -> int:
        return ModelKVCache.bytes_per_page(self.num_layers, page_size, self.num_kv_heads, self.head_dim, self.dtype)


@dataclass
class PageTable:
    """One (model, sequence): its page ids in order and the number of tokens whose K/V is stored."""

    pages: list[int] = field(default_factory=list)
    length: int = 0


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


class KVPool:
    """Paged KV memory of all models of one engine.

    Build with ``KVPool.create({"small": spec_s, "large": spec_l}, memory="2GiB")`` (or
    ``num_pages=...``; default: ``FSGEN_KV_MEMORY`` / ``FSGEN_PAGE_SIZE``). Sequences need no
    registration: a (model, sequence) table is created empty the first time ``prepare`` sees it.
    """

    def __init__(self, models: dict[ModelId, KVModelSpec], num_pages: int, page_size: int):
        if not models:
            raise ValueError("KVPool: models is empty; give at least one {model_id: KVModelSpec}")
        self.page_size = int(page_size)
        self.allocator = PageAllocator(int(num_pages), self.page_size)
        self.specs = dict(models)
        self.caches: dict[ModelId, ModelKVCache] = {
            m: ModelKVCache.allocate(s.num_layers, num_pages, self.page_size, s.num_kv_heads, s.head_dim,
                                     s.dtype, s.device) for m, s in self.specs.items()}
        self.tables: dict[ModelId, dict[SeqId, PageTable]] = {m: {} for m in self.specs}
        # called as copy_listener(model_id, src, dst) after each copy-on-write page copy: a tensor-parallel
        # engine replays the copies on the other ranks' pages (each rank holds its own heads)
        self.copy_listener = None

    # ------------------------------------------------------------------ construction
    @staticmethod
    def bytes_per_page(models: dict[ModelId, KVModelSpec], page_size: int) -> int:
        return sum(s.bytes_per_page(page_size) for s in models.values())

    @classmethod
    def num_pages_for(cls, models: dict[ModelId, KVModelSpec], page_size: int, memory: int | float | str) -> int:
        """Pages that fit a byte budget (int bytes, ``"2GiB"``, or a fraction of free device memory)."""
        budget = parse_memory(memory)
        if isinstance(budget, float):
            device = torch.device(next(iter(models.values())).device)
            budget = int(budget * _available_bytes(device))
        per_page = cls.bytes_per_page(models, page_size)
        n = budget // per_page
        if n <= 0:
            raise ValueError(f"KVPool: a budget of {budget} bytes holds no page ({per_page} bytes per page of "
                             f"{page_size} tokens over {len(models)} model(s)); raise FSGEN_KV_MEMORY / memory=")
        return int(n)

    @classmethod
    def create(cls, models: dict[ModelId, KVModelSpec], *, page_size: int | None = None,
               memory: int | float | str | None = None, num_pages: int | None = None) -> "KVPool":
        page_size = env_page_size() if page_size is None else int(page_size)
        if num_pages is None:
            if memory is None:
                memory = env_kv_memory(torch.device(next(iter(models.values())).device).type)
            num_pages = cls.num_pages_for(models, page_size, memory)
        return cls(models, num_pages, page_size)

    # ------------------------------------------------------------------ queries
    @property
    def num_pages(self) -> int:
        return self.allocator.num_pages

    @property
    def num_free_pages(self) -> int:
        return self.allocator.num_free

    def cache(self, model_id: ModelId) -> ModelKVCache:
        return self.caches[self._model(model_id)]

    def has_sequence(self, model_id: ModelId, seq_id: SeqId) -> bool:
        return seq_id in self.tables[self._model(model_id)]

    def seq_len(self, model_id: ModelId, seq_id: SeqId) -> int:
        """KV length stored for (model, sequence); 0 if the model has not seen it."""
        t = self.tables[self._model(model_id)].get(seq_id)
        return 0 if t is None else t.length

    def page_table(self, model_id: ModelId, seq_id: SeqId) -> PageTable:
        return self.tables[self._model(model_id)][seq_id]

    def sequences(self) -> set:
        return {s for tabs in self.tables.values() for s in tabs}

    def pages_needed(self, model_id: ModelId, seq_ids: Sequence[SeqId], num_new_tokens: Sequence[int]) -> int:
        """Pages ``prepare`` would take for these sequences (new pages + copy-on-write of shared last pages)."""
        tabs = self.tables[self._model(model_id)]
        return sum(self._pages_needed(tabs.get(s), n) for s, n in zip(seq_ids, num_new_tokens))

    def can_allocate(self, model_id: ModelId, seq_ids: Sequence[SeqId], num_new_tokens: Sequence[int]) -> bool:
        return self.pages_needed(model_id, seq_ids, num_new_tokens) <= self.allocator.num_free

    # ------------------------------------------------------------------ mutation
    def allocate(self, model_id: ModelId, seq_ids: Sequence[SeqId], num_new_tokens: Sequence[int]
                 ) -> list[tuple[int, int]]:
        """Grow each (model, sequence) by ``num_new_tokens[i]`` slots (all or nothing).

        Makes the page that receives the first new token exclusive (copy-on-write when it is shared
        with a fork: the K/V of that page is copied for this model) and appends fresh pages. Returns
        ``(old_length, new_length)`` per sequence. Raises ``KVPoolExhausted`` with nothing changed.
        """
        model_id = self._model(model_id)
        if len(seq_ids) != len(num_new_tokens):
            raise ValueError(f"KVPool.allocate: {len(seq_ids)} seq_ids but {len(num_new_tokens)} token counts")
        if len(set(seq_ids)) != len(seq_ids):
            raise ValueError(f"KVPool.allocate: seq_ids {list(seq_ids)} has duplicates; each sequence once per step")
        for n in num_new_tokens:
            if n < 0:
                raise ValueError(f"KVPool.allocate: a new-token count is {n}; counts must be >= 0")
        tabs = self.tables[model_id]
        needed = sum(self._pages_needed(tabs.get(s), n) for s, n in zip(seq_ids, num_new_tokens))
        self.allocator.check_available(needed, f"model {model_id!r}, {len(seq_ids)} sequence(s)")
        S = self.page_size
        cow_src: list[int] = []
        cow_dst: list[int] = []
        spans = []
        for s, n in zip(seq_ids, num_new_tokens):
            t = tabs.get(s)
            if t is None:
                t = tabs[s] = PageTable()
            old = t.length
            if n > 0 and old % S and self.allocator.refcount(t.pages[-1]) > 1:
                (new_page,) = self.allocator.allocate(1)
                cow_src.append(t.pages[-1])
                cow_dst.append(new_page)
                self.allocator.decref(t.pages[-1])
                t.pages[-1] = new_page
            extra = -(-(old + n) // S) - len(t.pages)
            if extra > 0:
                t.pages.extend(self.allocator.allocate(extra))
            t.length = old + n
            spans.append((old, old + n))
        if cow_src:
            self._copy_pages(model_id, cow_src, cow_dst)
        return spans

    def truncate(self, model_id: ModelId, seq_id: SeqId, length: int) -> None:
        """Keep the first ``length`` tokens of (model, sequence) (rollback of rejected draft tokens):
        whole pages past the new end go back to the pool."""
        t = self.tables[self._model(model_id)].get(seq_id)
        if t is None:
            if length == 0:
                return
            raise KeyError(f"KVPool.truncate: model {model_id!r} has no sequence {seq_id!r}")
        if not 0 <= length <= t.length:
            raise ValueError(f"KVPool.truncate: length={length} must be in [0, {t.length}] "
                             f"(current length of sequence {seq_id!r} in model {model_id!r})")
        keep = -(-length // self.page_size)
        for p in t.pages[keep:]:
            self.allocator.decref(p)
        del t.pages[keep:]
        t.length = length

    def free_sequence(self, seq_id: SeqId, model_id: ModelId | None = None) -> None:
        """Release a sequence's pages in every model (or only ``model_id``). Unknown ids are ignored."""
        models = self.tables if model_id is None else [self._model(model_id)]
        for m in models:
            t = self.tables[m].pop(seq_id, None)
            if t is not None:
                for p in t.pages:
                    self.allocator.decref(p)

    def fork(self, seq_id: SeqId, new_seq_id: SeqId) -> None:
        """``new_seq_id`` starts as a copy of ``seq_id`` in every model, sharing its pages (copy on
        write happens in ``allocate``/``prepare`` when either appends into a shared page)."""
        if any(new_seq_id in tabs for tabs in self.tables.values()):
            raise ValueError(f"KVPool.fork: sequence {new_seq_id!r} already exists; free it first or pick a new id")
        if seq_id == new_seq_id:
            raise ValueError(f"KVPool.fork: seq_id and new_seq_id are both {seq_id!r}")
        for tabs in self.tables.values():
            t = tabs.get(seq_id)
            if t is not None:
                for p in t.pages:
                    self.allocator.incref(p)
                tabs[new_seq_id] = PageTable(list(t.pages), t.length)

    def prepare(self, model_id: ModelId, seq_ids: Sequence[SeqId], new_token_ids: Sequence,
                logits="last", page_table_width: int | None = None):
        """Allocate slots for this step's new tokens and build the ``ForwardBatch`` (see kv/prepare.py)."""
        from fsgen_engine.kv.prepare import prepare_batch
        return prepare_batch(self, model_id, seq_ids, new_token_ids, logits=logits, page_table_width=page_table_width)

    # ------------------------------------------------------------------ internals
    def _model(self, model_id: ModelId) -> ModelId:
        if model_id not in self.tables:
            raise KeyError(f"KVPool: unknown model {model_id!r}; known: {list(self.tables)}")
        return model_id

    def _pages_needed(self, t: PageTable | None, n: int) -> int:
        if t is None:
            return -(-n // self.page_size)
        cow = int(n > 0 and t.length % self.page_size != 0 and self.allocator.refcount(t.pages[-1]) > 1)
        return cow + max(0, -(-(t.length + n) // self.page_size) - len(t.pages))

    def _copy_pages(self, model_id: ModelId, src: list[int], dst: list[int]) -> None:
        cache = self.caches[model_id]
        device = cache.k[0].device
        src_t = torch.tensor(src, dtype=torch.long, device=device)
        dst_t = torch.tensor(dst, dtype=torch.long, device=device)
        copy_pages(cache, src_t, dst_t)
        if self.copy_listener is not None:
            self.copy_listener(model_id, list(src), list(dst))

    def check_invariants(self) -> None:
        """Assert the free list and the reference counts balance the page tables (tests, debugging)."""
        counts = [0] * self.num_pages
        for tabs in self.tables.values():
            for t in tabs.values():
                assert len(t.pages) == -(-t.length // self.page_size), (t.length, len(t.pages))
                for p in t.pages:
                    counts[p] += 1
        free = self.allocator.free_pages()
        free_set = set(free)
        assert len(free_set) == len(free), "a page is twice in the free list"
        for p in range(self.num_pages):
            assert counts[p] == self.allocator.refcount(p), (p, counts[p], self.allocator.refcount(p))
            assert (counts[p] == 0) == (p in free_set), p
        assert len(free) + sum(c > 0 for c in counts) == self.num_pages
