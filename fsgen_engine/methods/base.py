"""What a method is: a policy that advances a batch of rows using the runtime's step primitives.

``Method.step(rows)`` advances every row by at least one token (or one speculative round) and
returns one :class:`StepResult` per row: the tokens it emits and what the trace records about them,
on the host. It never touches a row's tokens, stats or trace: ``Tracer.record`` (methods/tracer.py)
applies the results, so ``step`` is the algorithm only. Per-row algorithm state (a speculative row's
K, BiLD's small-token run) lives in the method, keyed by ``row.seq_id``. ``model_ids`` lists the
models whose KV the method uses (the engine reserves pages for each); ``lookahead`` the KV slots a
row may need past its tokens (drafts fed before they are accepted).

Top-K tracing (``MethodConfig.trace_topk`` = K > 0): a method computes :meth:`Method.topk` of a
model's logits on the device and passes the two tensors through the step's existing ``to_host``
call (never an extra sync); :func:`topk_rows` cuts one row's entries out of the host arrays.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class MethodConfig:
    """Resolved generate() options a method needs."""

    method: str
    router: object = None                 # fsgen_engine.routers.Router
    fuse: str | None = None               # ops.fuse_logits method for contrastive / proxy targets
    alpha: float | None = None
    beta: float | None = None
    weights: tuple | None = None
    num_draft_tokens: int = 5
    adaptive_draft: bool = False
    target: str | None = None             # speculative: None (large) | "contrastive" | "proxy"
    draft_stop: object = None             # speculative: None | a routers.Router (methods/draft_stop.py)
    draft_backoff: int = 8                # draft_stop: longest back-off after a first-draft fire (0 = off;
                                          # default = methods/draft_stop.py MAX_SKIP_ROUNDS)
    mismatch_reference: str = "small"     # proxy: "small" (base argmax, FS-GEN) | "small_ft"
    bild_rollback: float = 5.0
    bild_max_small: int = 10
    trace_topk: int = 0                   # K of the top-K distributions recorded per step (0 = off)
    extra: dict = field(default_factory=dict)


@dataclass
class StepResult:
    """What one step emitted for one row, on the host: one entry per token, in order.

    tokens: the emitted tokens (the stop rules may keep fewer).
    source: per token, ``"small"`` (System 1's own token), ``"large"``, ``"fused"``, ``"draft"`` or
        ``"rollback"``; every source but ``"small"`` is a routed token (System 2 ran for it).
    small: ``[n', 4]`` System 1's entropy, max prob, margin and argmax at each token's position (a
        token past ``n'`` had no System-1 distribution, e.g. a speculative bonus token); None: System
        1 did not run. large_argmax: ``[n']`` the large model's argmax likewise (None: it did not run).
    small_topk / large_topk: ``(probs [n', k], ids [n', k])`` when tracing top-K (``topk_rows``).
    rollback: BiLD: the generated tokens from this index on are dropped first, and the first emitted
        token keeps the dropped one's System-1 data.
    large_calls, mismatches, drafted, accepted: what the step adds to the row's ``GenerationStats``.
    wasted: speculative: draft-model tokens of the round not emitted as accepted drafts (rejected
        drafts plus the token a ``draft_stop`` rule fired on). draft_stop: speculative: why the
        round's drafting stopped, ``"k"`` / ``"rule"`` / ``"eos"`` (methods/draft_stop.py); the
        tracer records ``(drafted, draft_stop, accepted)`` per round in ``Trace.rounds``.
    """

    tokens: list
    source: list[str]
    small: np.ndarray | None = None
    large_argmax: np.ndarray | None = None
    small_topk: tuple | None = None
    large_topk: tuple | None = None
    rollback: int | None = None
    large_calls: int = 0
    mismatches: int = 0
    drafted: int = 0
    accepted: int = 0
    wasted: int = 0
    draft_stop: str | None = None


class Method:
    model_ids: tuple[str, ...] = ()
    lookahead: int = 0  # extra KV slots a row may need beyond prompt + max_new (drafts)

    def __init__(self, cfg: MethodConfig, runner, sampler):
        self.cfg = cfg
        self.runner = runner
        self.sampler = sampler

    def topk(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Top-K of ``softmax(z)`` over the last dim for the trace (``topk_tensors``); ``[]`` when off."""
        return topk_tensors(z, self.cfg.trace_topk)

    def start_row(self, row) -> None:
        """Called when a row is admitted."""

    def step(self, rows: list) -> list[StepResult]:
        raise NotImplementedError


def topk_tensors(z: torch.Tensor, k: int) -> list[torch.Tensor]:
    """``[probs [..., k'] float32, ids [..., k'] int64]``: ``torch.topk(softmax(z), k' = min(k, V))``
    on ``z``'s device, sorted descending; ``[]`` when ``k`` is 0 so that ``to_host(..., *topk)`` adds
    nothing (no work at all when tracing is off)."""
    if k <= 0:
        return []
    top = torch.topk(torch.softmax(z.float(), dim=-1), min(k, z.shape[-1]), dim=-1)
    return [top.values, top.indices]


def stack_topk(parts: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """Per-position ``topk_tensors`` results ``[B, k]`` -> ``[probs [B, n, k], ids [B, n, k]]``
    (``[]`` when tracing is off)."""
    if not parts or not parts[0]:
        return []
    return [torch.stack(list(col), dim=1) for col in zip(*parts)]


def topk_rows(host: list, b: int, n: int | None = None) -> tuple | None:
    """Row ``b``'s entries of host top-K arrays (``to_host``'s output for a ``topk_tensors`` pair):
    ``[b:b+1]`` of a ``[B, k]`` pair (a one-token step), ``[b, :n]`` of a ``[B, n_max, k]`` pair.
    None when ``host`` is empty (tracing off)."""
    if not host:
        return None
    probs, ids = host
    if probs.ndim == 2:
        return probs[b:b + 1], ids[b:b + 1]
    return probs[b, :n], ids[b, :n]
