"""Continuous batching: admit groups of rows as KV pages and ``max_batch`` allow, step, retire.

A *group* is the ``n`` samples of one prompt. It is admitted whole, and when ``n > 1`` the prompt's
KV (all but its last token) is computed once per model for the group's first row and forked to the
others (``KVPool.fork``: shared pages, copy on write), so ``n`` samples cost one prefill. Each row
reserves its worst-case page count up front, so a step never runs out of pages; a finished row frees
its pages at once and the next group joins the running batch at the next step (its prompt is simply
the pending tokens of its first forward).
"""
from __future__ import annotations

from collections import deque
from typing import Callable


class Scheduler:
    """Runs a method over groups of rows on one engine's KV pool and models."""

    def __init__(self, pool, models: dict, max_batch: int, new_seq_id: Callable[[], int]):
        self.pool, self.models, self.max_batch, self.new_seq_id = pool, models, max_batch, new_seq_id

    def run(self, algo, tracer, groups: list[list], needs: list[int], *, progress: bool, desc: str) -> None:
        """Generate every row of ``groups`` (lists of ``Row``; ``needs[g]``: pages group g may use in
        the worst case, at most the pool's size) with method ``algo``, whose step results ``tracer``
        applies to the rows (methods/tracer.py). Every page is returned, also on error."""
        pool = self.pool
        queue = deque(zip(groups, needs))
        active: list = []
        admitted: list = []
        reserved = 0
        bar = _progress_bar(sum(len(g) for g in groups), desc) if progress else None
        try:
            while queue or active:
                while queue and len(active) + len(queue[0][0]) <= self.max_batch \
                        and reserved + queue[0][1] <= pool.num_pages:
                    group, need = queue.popleft()
                    reserved += need
                    for r in group:
                        r.seq_id = self.new_seq_id()
                        r.reserved_pages = need // len(group)
                        admitted.append(r)
                    self._share_prompt(algo, group)
                    for r in group:
                        algo.start_row(r)
                        active.append(r)
                tracer.record(active, algo.step(active))
                still = []
                for r in active:
                    if r.finish_reason is None:
                        still.append(r)
                        continue
                    pool.free_sequence(r.seq_id)
                    reserved -= r.reserved_pages
                    if bar is not None:
                        bar.update(1)
                active = still
        finally:
            for r in admitted:
                pool.free_sequence(r.seq_id)
            if bar is not None:
                bar.close()

    def _share_prompt(self, algo, group: list) -> None:
        """Prefill all but the last prompt token once per model for ``group[0]``, fork it to the rest."""
        head = group[0].prompt[:-1]
        if len(group) == 1 or not head:
            return
        lead = group[0].seq_id
        for m in algo.model_ids:
            batch = self.pool.prepare(m, [lead], [head], logits=None)
            self.models[m].forward(batch, self.pool.cache(m))
        for r in group[1:]:
            self.pool.fork(lead, r.seq_id)


def _progress_bar(total: int, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc=desc, unit="seq", leave=False)
