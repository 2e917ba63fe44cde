"""Megatron-style tensor parallelism of the model families: which slice of each weight a rank holds,
and the three collectives a sharded forward needs.

A rank of a ``TPShard`` of size ``N`` holds

- attention (q/k/v column-parallel, o_proj row-parallel): with ``Hkv >= N`` a ceil-divided block of the
  KV heads and the query heads that read them (so SmolLM2's 9 heads / 3 KV heads split 6 + 3 over two
  ranks); with fewer KV heads than ranks each KV head is replicated on ``N / Hkv`` consecutive ranks (as
  vLLM does), which split its query heads evenly;
- MLP: a contiguous block of the intermediate dimension (gate/up column-parallel, down row-parallel);
- vocabulary: a contiguous block of the embedding and LM-head rows (vocab-parallel embedding: each
  rank embeds the ids it owns and the partial embeddings are summed).

Blocks are ceil-divided (the last one may be shorter), so the intermediate size and the vocabulary need
not divide by ``N``; head counts must. A row-parallel projection's bias is added once, after the
all-reduce. The forward therefore runs ``2 * layers + 1`` all-reduces and one all-gather of the logits.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def block(n: int, rank: int, size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous block ``[lo, hi)`` of ``n`` items split in ceil-divided blocks."""
    step = -(-n // size)
    lo = min(n, rank * step)
    return lo, min(n, lo + step)


def attention_heads(num_heads: int, num_kv_heads: int, rank: int, size: int) -> tuple[int, int, int, int]:
    """Rank ``rank``'s query heads ``[q0, q1)`` and KV heads ``[k0, k1)`` (see the module docstring)."""
    group = num_heads // num_kv_heads
    if num_kv_heads >= size:
        k0, k1 = block(num_kv_heads, rank, size)
        return k0 * group, k1 * group, k0, k1
    reps = size // num_kv_heads
    k0 = rank // reps
    per = group // reps
    q0 = k0 * group + (rank % reps) * per
    return q0, q0 + per, k0, k0 + 1


def check_geometry(role: str, num_heads: int, num_kv_heads: int, vocab_size: int, intermediate: int,
                   size: int) -> None:
    """ValueError (before any weight is read) when a model cannot be split over ``size`` ranks."""
    if size == 1:
        return
    fits = [n for n in range(1, 2 * num_heads + 1) if _heads_fit(num_heads, num_kv_heads, n)]
    if not _heads_fit(num_heads, num_kv_heads, size):
        raise ValueError(f"{role}: {num_heads} attention heads / {num_key_value(num_kv_heads)} cannot be split over "
                         f"{size} tensor-parallel ranks (each rank needs whole KV heads, or an even share of "
                         f"one KV head's query heads); use a size in {fits}")
    for what, n in (("vocab_size", vocab_size), ("intermediate_size", intermediate)):
        lo, hi = block(n, size - 1, size)
        if hi - lo < 1:
            raise ValueError(f"{role}: {what}={n} is too small to split over {size} ranks (a rank would hold "
                             f"nothing); use a smaller tensor-parallel size")


def num_key_value(n: int) -> str:
    return f"{n} KV head" + ("s" if n != 1 else "")


def _heads_fit(num_heads: int, num_kv_heads: int, size: int) -> bool:
    if num_kv_heads < 1 or num_heads % num_kv_heads:
        return False
    if num_kv_heads >= size:
        lo, hi = block(num_kv_heads, size - 1, size)
        return hi > lo
    return size % num_kv_heads == 0 and (num_heads // num_kv_heads) % (size // num_kv_heads) == 0


@dataclass(frozen=True)
class TPShard:
    """One rank's place in a tensor-parallel model, and its collectives.

    ``group``: the ``torch.distributed`` process group of the model's ranks (None: the default group).
    """

    rank: int
    size: int
    group: object = None

    # ---------------------------------------------------------------- slices
    def heads(self, num_heads: int, num_kv_heads: int) -> tuple[int, int, int, int]:
        """This rank's query heads ``[q0, q1)`` and KV heads ``[k0, k1)``."""
        return attention_heads(num_heads, num_kv_heads, self.rank, self.size)

    def block(self, n: int) -> tuple[int, int]:
        return block(n, self.rank, self.size)

    # ---------------------------------------------------------------- collectives
    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of ``x`` over the ranks, in place (a row-parallel projection's partial outputs)."""
        import torch.distributed as dist

        dist.all_reduce(x, group=self.group)
        return x

    def all_gather(self, x: torch.Tensor) -> torch.Tensor:
        """``[R, *x.shape]``: every rank's ``x`` (same shape on every rank), in rank order."""
        import torch.distributed as dist

        parts = [torch.empty_like(x) for _ in range(self.size)]
        dist.all_gather(parts, x.contiguous(), group=self.group)
        return torch.stack(parts)

    def gather_vocab(self, local: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """Full logits ``[M, vocab_size]`` on every rank from each rank's block ``[M, V_r]`` (padded to the
        largest block for the all-gather, then trimmed)."""
        import torch.distributed as dist

        step = -(-vocab_size // self.size)
        if local.shape[1] < step:
            local = torch.nn.functional.pad(local, (0, step - local.shape[1]))
        parts = [torch.empty_like(local) for _ in range(self.size)]
        dist.all_gather(parts, local.contiguous(), group=self.group)
        return torch.cat(parts, dim=1)[:, :vocab_size]


def embed_vocab_parallel(ids: torch.Tensor, table: torch.Tensor, lo: int, tp: TPShard) -> torch.Tensor:
    """Embedding of ``ids [N]`` with this rank holding rows ``[lo, lo + len(table))``: rows of other ranks
    embed to zero here and the all-reduce sums in the owner's row."""
    local = ids - lo
    mine = (local >= 0) & (local < table.shape[0])
    x = torch.nn.functional.embedding(torch.where(mine, local, torch.zeros_like(local)), table)
    x = x * mine.unsqueeze(-1).to(x.dtype)
    return tp.all_reduce(x)


class ShardedWeights:
    """What one rank reads of a ``WeightSource``: whole tensors, or the row / column block a
    column- / row-parallel projection needs (the whole tensor when ``tp`` is None)."""

    def __init__(self, src, tp: TPShard | None):
        self.src, self.tp = src, tp

    def full(self, name: str, required: bool = True):
        t = self.src.require(name) if required else self.src.get(name)
        # a shard owns copies: a loader's zero-copy tensor would keep the whole memory-mapped file (and every
        # page the slicing read) resident in this rank
        return t.clone() if self.tp is not None and t is not None else t

    def rows(self, name: str, lo: int, hi: int, required: bool = True):
        """Output rows ``[lo, hi)`` (column-parallel weight, or its bias)."""
        if self.tp is None:
            return self.full(name, required)
        return self.src.part(name, 0, lo, hi, required=required)

    def cols(self, name: str, lo: int, hi: int):
        """Input columns ``[lo, hi)`` (row-parallel weight)."""
        if self.tp is None:
            return self.full(name)
        return self.src.part(name, 1, lo, hi)

    def vocab_rows(self, name: str):
        """``(rows of this rank, first row, total rows)`` of an embedding / LM head."""
        n = self.src.shape(name)[0]
        if self.tp is None:
            return self.full(name), 0, n
        lo, hi = self.tp.block(n)
        return self.src.part(name, 0, lo, hi), lo, n
