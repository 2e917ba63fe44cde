"""Rank 0's handle on a tensor-parallel model: what the engine calls ``model.forward(batch, kv)``.

``ShardedModel`` wraps rank 0's shard (a ``CausalLM`` built with a ``TPShard``): a forward first
broadcasts the step (``TPRuntime.send_forward``), then runs the shard, whose all-reduces and final
logits all-gather pair with the other ranks'. Everything else (geometry, vocabulary, EOS ids, the KV
spec of rank 0's heads) is read from the shard, so the engine, its KV pool and its methods treat it as
any model; the logits are the whole vocabulary's, so every logit op runs on rank 0 unchanged.
"""
from __future__ import annotations

import torch

from fsgen_engine.core import ForwardBatch


class ShardedModel:
    """``model``: rank 0's shard; ``runtime``: the ``TPRuntime``; ``index``: which loaded model (its
    role's index); ``cache``: the index of the role whose KV cache it runs on."""

    def __init__(self, shard, runtime, index: int, cache: int):
        self.shard, self.runtime, self.index, self.cache_index = shard, runtime, index, cache
        self.pending_copies: list[tuple[int, int]] = []   # rank 0's page copies the other ranks still owe

    def record_copies(self, src: list[int], dst: list[int]) -> None:
        """``KVPool.copy_listener`` for this model's cache: replayed before its next forward."""
        self.pending_copies.extend(zip(src, dst))

    @property
    def tp_size(self) -> int:
        return self.runtime.size

    def __getattr__(self, name):
        # geometry and metadata (num_layers, num_kv_heads, vocab_size, config, kv_spec, ...) are the shard's
        if name == "shard":
            raise AttributeError(name)
        return getattr(self.shard, name)

    @torch.no_grad()
    def forward(self, batch: ForwardBatch, kv, *, output: str = "logits", vocab_limit: int | None = None
                ) -> torch.Tensor:
        """Logits ``[M, V]`` float32 of the whole vocabulary, or with ``output="argmax"`` the greedy tokens
        ``[M]`` from the ranks' merged (max, id) pairs (see ``CausalLM.forward``)."""
        rt = self.runtime
        rt.check_open()
        rt.dirty = True
        try:
            copies, self.pending_copies = self.pending_copies, []
            limit = None if output == "logits" else int(vocab_limit or self.shard.vocab_size)
            rt.send_forward(self.index, self.shard.num_layers, self.cache_index, batch, int(kv.k[0].shape[0]),
                            int(kv.page_size), copies, limit)
            logits = self.shard.forward(batch, kv, output=output, vocab_limit=limit)
        except BaseException as exc:
            err = rt.fail(exc)   # the ranks are out of step: stop them all
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise err from exc
        rt.dirty = False
        return logits

    __call__ = forward

    def early_exit(self, n_layers: int, cache_role_index: int | None = None) -> "ShardedModel":
        """The first ``n_layers`` of this sharded model (every rank runs the same view of its shard)."""
        return ShardedModel(self.shard.early_exit(n_layers), self.runtime, self.index,
                            self.cache_index if cache_role_index is None else cache_role_index)

    def __repr__(self) -> str:
        return f"ShardedModel(TP={self.runtime.size}, rank 0 shard {self.shard!r})"
