"""CausalLM: what every model family shares (metadata, forward skeleton over paged KV, early exit).

A family subclass provides ``_embed``, ``_layer`` and ``_final_norm`` and holds its weights as plain
tensors (no nn.Module): building from an HF model then shares the HF tensors, and an early-exit view
shares ours.
"""
from __future__ import annotations

import copy
from dataclasses import replace

import torch
import torch.nn.functional as F

from fsgen_engine import ops
from fsgen_engine.models.config import ModelConfig
from fsgen_engine.models.layers import Rotary
from fsgen_engine.models.tensor_parallel import TPShard, embed_vocab_parallel
from fsgen_engine.core import ForwardBatch


class CausalLM:
    """A decoder-only LM over the engine's paged KV cache.

    Attributes: ``config`` (ModelConfig), ``num_layers`` (layers this view runs), ``num_kv_heads``,
    ``head_dim``, ``vocab_size``, ``dtype``, ``device``, ``eos_token_ids``, ``max_position_embeddings``,
    ``tokenizer`` (set by ``load_model`` when one was found, else None).
    """

    family = "base"

    def __init__(self, config: ModelConfig, weights: dict, dtype: torch.dtype, device: torch.device):
        self.config = config
        self.weights = weights          # {"embed", "final_norm", "final_norm_bias", "lm_head", "layers": [dict]}
        self.dtype = dtype
        self.device = torch.device(device)
        self.num_layers = config.num_layers
        self.rotary = Rotary(config, dtype, self.device)
        self.scale = config.head_dim ** -0.5
        self.tokenizer = None
        self.name = None
        # Tensor parallelism (models/tensor_parallel.py): this rank's shard; ``config`` then holds the
        # rank's head counts and intermediate block, ``global_config`` the model's own.
        self.tp: TPShard | None = None
        self.global_config = config
        self.embed_lo = 0            # first vocabulary row of this rank's embedding block
        self.lm_head_rows = None     # rows of the whole LM head (the logits' width) under TP

    @classmethod
    def _assemble(cls, cfg: ModelConfig, weights: dict, src: "WeightSource", tp: TPShard | None, embed_lo: int,
                  lm_head_rows: int, **local) -> "CausalLM":
        """The model, or with ``tp`` one rank's shard: its ``config`` then holds the rank's ``local`` sizes
        (heads, KV heads, intermediate block) and ``global_config`` the model's own."""
        model = cls(cfg if tp is None else replace(cfg, **local), weights, src.dtype, src.device)
        if tp is not None:
            model.tp, model.global_config, model.embed_lo, model.lm_head_rows = tp, cfg, embed_lo, lm_head_rows
            model.lm_head_lo = tp.block(lm_head_rows)[0]   # first vocabulary row of this rank's LM-head block
        return model

    # ---------------------------------------------------------------- metadata
    @property
    def num_kv_heads(self) -> int:
        return self.config.num_kv_heads

    @property
    def num_heads(self) -> int:
        return self.config.num_heads

    @property
    def head_dim(self) -> int:
        return self.config.head_dim

    @property
    def vocab_size(self) -> int:
        if self.tp is not None:
            return int(self.lm_head_rows)
        return int(self.weights["lm_head"].shape[0])

    @property
    def eos_token_ids(self) -> list[int]:
        return list(self.config.eos_token_ids)

    @property
    def max_position_embeddings(self) -> int:
        return self.config.max_position_embeddings

    @property
    def kv_dtype(self) -> torch.dtype:
        return self.dtype

    @property
    def kv_spec(self):
        """``KVModelSpec`` of this view (its layer count) for ``KVPool.create`` / ``ModelKVCache.allocate``."""
        from fsgen_engine.kv import KVModelSpec

        return KVModelSpec(self.num_layers, self.num_kv_heads, self.head_dim, self.dtype, self.device)

    def allocate_kv(self, num_pages: int, page_size: int):
        """A standalone ``ModelKVCache`` for this model (tests, single-model use)."""
        from fsgen_engine.kv.cache import ModelKVCache

        return ModelKVCache.allocate(self.num_layers, num_pages, page_size, self.num_kv_heads, self.head_dim,
                                     self.dtype, self.device)

    def num_parameters(self) -> int:
        seen, n = set(), 0
        for t in _tensors(self.weights, self.num_layers):
            if t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                n += t.numel()
        return n

    def early_exit(self, n_layers: int) -> "CausalLM":
        """A view running only the first ``n_layers`` layers, then the final norm and LM head.

        Shares every weight tensor and the rotary tables (no copy); its ``kv_spec`` has ``n_layers`` layers.
        """
        if not isinstance(n_layers, int) or not 1 <= n_layers <= self.config.num_layers:
            raise ValueError(f"early_exit(n_layers={n_layers!r}): give an int in [1, {self.config.num_layers}] "
                             f"(this model has {self.config.num_layers} layers)")
        view = copy.copy(self)
        view.num_layers = n_layers
        if self.name:
            view.name = f"{self.name} (early_exit:{n_layers})"
        return view

    def __repr__(self) -> str:
        c = self.config
        return (f"{type(self).__name__}({c.model_type}, layers={self.num_layers}/{c.num_layers}, hidden={c.hidden_size}, "
                f"heads={c.num_heads}/{c.num_kv_heads}x{c.head_dim}, vocab={self.vocab_size}, {self.dtype}, "
                f"{self.device})")

    # ---------------------------------------------------------------- forward
    # no_grad, not inference_mode: callers may edit the returned logits in place outside inference mode
    @torch.no_grad()
    def forward(self, batch: ForwardBatch, kv, *, output: str = "logits", vocab_limit: int | None = None
                ) -> torch.Tensor:
        """Logits ``[M, V]`` float32 of the rows ``batch.logits_indices`` after storing the batch's K/V.

        ``kv``: a ``ModelKVCache`` with at least ``num_layers`` layers of ``[P, S, num_kv_heads, head_dim]``
        in ``dtype``. Prefill, extend and decode go through this one path. ``output="argmax"`` returns
        the greedy tokens ``[M]`` int64 over the first ``vocab_limit`` ids instead (NaN never chosen, ties
        to the lowest id): under tensor parallelism each rank reduces its vocabulary block to (max, id)
        and only those are gathered, not the ``M x V`` logits (``ops.vocab_parallel``).
        """
        if len(kv.k) < self.num_layers:
            raise ValueError(f"kv has {len(kv.k)} layers but this model runs {self.num_layers}; allocate it with "
                             f"model.kv_spec")
        x = self._embed(batch.input_ids)
        cos, sin = self.rotary.tables(batch.positions, batch.max_seq_len)
        for i in range(self.num_layers):
            x = self._layer(i, x, batch, kv, cos, sin)
        x = x[batch.logits_indices]
        x = self._final_norm(x)
        logits = F.linear(x, self.weights["lm_head"]).float()
        if output == "argmax":
            return self._argmax(logits, vocab_limit)
        if self.tp is not None:
            logits = self.tp.gather_vocab(logits, self.lm_head_rows)
        return logits

    def _argmax(self, logits: torch.Tensor, vocab_limit: int | None) -> torch.Tensor:
        lo = self.lm_head_lo if self.tp is not None else 0
        if vocab_limit is not None and lo + logits.shape[1] > vocab_limit:
            logits[:, max(0, vocab_limit - lo):] = float("-inf")   # padding rows beyond the shared vocabulary
        part = ops.argmax_partial(logits, lo)
        return ops.merge_argmax(self.tp.all_gather(part) if self.tp is not None else part[None])

    __call__ = forward

    def _attend(self, i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: ForwardBatch, kv) -> torch.Tensor:
        """Store this step's K/V of layer ``i`` and attend; q ``[N, H, D]``, k/v ``[N, Hkv, D]`` -> ``[N, H*D]``."""
        ops.store_kv(k, v, kv.k[i], kv.v[i], batch.slot_mapping)
        o = ops.paged_attention(q, kv.k[i], kv.v[i], batch.page_table, batch.seq_lens, batch.cu_q_lens,
                                scale=self.scale, causal=True, window=self.config.attn_window(i),
                                max_q_len=batch.max_q_len, max_seq_len=batch.max_seq_len)
        return o.reshape(o.shape[0], -1)

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        if self.tp is not None:
            return embed_vocab_parallel(ids, self.weights["embed"], self.embed_lo, self.tp)
        return F.embedding(ids, self.weights["embed"])

    def _row_linear(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """A row-parallel projection (o_proj, down_proj): partial products summed over the ranks, then
        the bias once."""
        if self.tp is None:
            return F.linear(x, w, b)
        y = self.tp.all_reduce(F.linear(x, w))
        return y if b is None else y + b

    def _layer(self, i, x, batch, kv, cos, sin):  # pragma: no cover - abstract
        raise NotImplementedError

    def _final_norm(self, x):  # pragma: no cover - abstract
        raise NotImplementedError


def _tensors(weights: dict, n_layers: int):
    for k, v in weights.items():
        if isinstance(v, torch.Tensor):
            yield v
    for layer in weights["layers"][:n_layers]:
        for v in layer.values():
            if isinstance(v, torch.Tensor):
                yield v


class WeightSource:
    """Name -> tensor lookup that casts to the model dtype/device on access (HF parameter names).

    ``get_part(name, dim, lo, hi)`` (optional) reads only rows/columns ``[lo, hi)`` of ``dim`` from the
    file, so a tensor-parallel rank never holds a whole weight it does not need; without it a part is
    cut from the whole tensor (one tensor at a time). ``get_shape(name)`` (optional) gives a shape
    without reading the data.
    """

    def __init__(self, get, names, dtype: torch.dtype, device: torch.device, origin: str, *, get_part=None,
                 get_shape=None):
        self._get, self.names, self.dtype, self.device, self.origin = get, set(names), dtype, device, origin
        self._get_part, self._get_shape = get_part, get_shape

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(device=self.device, dtype=self.dtype) if t.is_floating_point() else t.to(self.device)

    def get(self, name: str) -> torch.Tensor | None:
        if name not in self.names:
            return None
        return self._cast(self._get(name))

    def require(self, name: str) -> torch.Tensor:
        t = self.get(name)
        if t is None:
            raise self._missing(name)
        return t

    def shape(self, name: str) -> tuple[int, ...]:
        if name not in self.names:
            raise self._missing(name)
        if self._get_shape is not None:
            return tuple(int(s) for s in self._get_shape(name))
        return tuple(self._get(name).shape)

    def part(self, name: str, dim: int, lo: int, hi: int, *, required: bool = True) -> torch.Tensor | None:
        """Rows (``dim=0``) or columns (``dim=1``) ``[lo, hi)`` of a weight (a bias: ``dim=0``), cast and
        contiguous; None for a missing optional weight."""
        if name not in self.names:
            if required:
                raise self._missing(name)
            return None
        if self._get_part is not None:
            t = self._get_part(name, dim, lo, hi)
        else:
            t = self._get(name).narrow(dim, lo, hi - lo).clone()
        return self._cast(t).contiguous()

    def _missing(self, name: str) -> ValueError:
        return ValueError(f"{self.origin}: weight {name!r} is missing (found {len(self.names)} tensors, e.g. "
                          f"{sorted(self.names)[:3]}); the checkpoint does not match its config")
