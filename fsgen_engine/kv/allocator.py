"""Page allocator: one free list and per-page reference counts for the whole engine.

Host-only bookkeeping in plain Python (a few thousand pages at most; every operation is O(pages
touched)). Pages are identified by ints in ``[0, num_pages)``; the same id indexes every model's
K/V storage (``ModelKVCache``), but a page is handed to one (model, sequence) table at a time, or
shared read-only between forked tables through its reference count.
"""
from __future__ import annotations


class KVPoolExhausted(RuntimeError):
    """Not enough free KV pages. The pool state is unchanged when this is raised."""

    def __init__(self, needed: int, free: int, total: int, page_size: int, what: str = ""):
        self.needed, self.free, self.total, self.page_size = needed, free, total, page_size
        super().__init__(
            f"KV pool exhausted{' (' + what + ')' if what else ''}: need {needed} page(s) of {page_size} tokens, "
            f"{free} free of {total}. Raise the budget (Engine(kv_memory='4GiB') or FSGEN_KV_MEMORY=4GiB, or a "
            f"larger fraction such as 0.8), lower the batch size / max_new_tokens, or free finished sequences.")


class PageAllocator:
    """Free list + reference counts. ``allocate`` hands out pages with count 1; ``incref`` shares one
    (fork); ``decref`` returns it to the free list when its count reaches 0."""

    def __init__(self, num_pages: int, page_size: int):
        if num_pages <= 0:
            raise ValueError(f"PageAllocator: num_pages={num_pages} must be positive")
        if page_size <= 0:
            raise ValueError(f"PageAllocator: page_size={page_size} must be positive")
        self.num_pages = num_pages
        self.page_size = page_size
        # Pop from the end: low page ids first, which keeps early pages hot and tests readable.
        self._free: list[int] = list(range(num_pages - 1, -1, -1))
        self._refs: list[int] = [0] * num_pages

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return self.num_pages - len(self._free)

    def refcount(self, page: int) -> int:
        return self._refs[page]

    def check_available(self, n: int, what: str = "") -> None:
        if n > len(self._free):
            raise KVPoolExhausted(n, len(self._free), self.num_pages, self.page_size, what)

    def allocate(self, n: int, what: str = "") -> list[int]:
        """``n`` fresh pages (count 1). Raises ``KVPoolExhausted`` and changes nothing if too few are free."""
        if n < 0:
            raise ValueError(f"PageAllocator.allocate: n={n} must be >= 0")
        self.check_available(n, what)
        if n == 0:
            return []
        pages = self._free[-n:][::-1]
        del self._free[-n:]
        for p in pages:
            self._refs[p] = 1
        return pages

    def incref(self, page: int) -> None:
        if self._refs[page] <= 0:
            raise RuntimeError(f"PageAllocator.incref: page {page} is free; sharing it would alias a free page")
        self._refs[page] += 1

    def decref(self, page: int) -> None:
        if self._refs[page] <= 0:
            raise RuntimeError(f"PageAllocator.decref: page {page} is already free (double free)")
        self._refs[page] -= 1
        if self._refs[page] == 0:
            self._free.append(page)

    def free_pages(self) -> list[int]:
        return list(self._free)
