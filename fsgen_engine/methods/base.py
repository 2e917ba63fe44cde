"""What a method is: a policy that advances a batch of rows using the runtime's step primitives.

``Method.step(rows)`` advances every row by at least one token (or one speculative round) and
appends the emitted tokens with ``Row.emit`` (which applies the stop rules). ``model_ids`` lists the
models whose KV the method uses (the engine reserves pages for each).

Top-K tracing (``MethodConfig.trace_topk`` = K > 0): a method computes :meth:`Method.topk` of a
model's logits on the device and passes the two tensors through the step's existing ``to_host``
call (never an extra sync); :func:`topk_row` turns one host row into the trace's lists.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from fsgen_engine.outputs import TraceStep

NAN = math.nan
NO_TOPK = (None, None)  # a step without a top-K distribution


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
    mismatch_reference: str = "small"     # proxy: "small" (base argmax, FS-GEN) | "small_ft"
    bild_rollback: float = 5.0
    bild_max_small: int = 10
    trace_topk: int = 0                   # K of the top-K distributions recorded per step (0 = off)
    extra: dict = field(default_factory=dict)


class Method:
    model_ids: tuple[str, ...] = ()
    lookahead: int = 0  # extra KV slots a row may need beyond prompt + max_new (drafts)

    def __init__(self, cfg: MethodConfig, runner, sampler, rules):
        self.cfg = cfg
        self.runner = runner
        self.sampler = sampler
        self.rules = rules

    def topk(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Top-K of ``softmax(z)`` over the last dim for the trace (``topk_tensors``); ``[]`` when off."""
        return topk_tensors(z, self.cfg.trace_topk)

    def start_row(self, row) -> None:
        """Called when a row is admitted."""

    def step(self, rows: list) -> None:
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


def topk_row(host: list, *index) -> tuple[list[float] | None, list[int] | None]:
    """``(probs, ids)`` lists of one row of host top-K arrays (``to_host``'s output for a
    ``topk_tensors`` pair; ``index`` picks the row, e.g. ``b`` or ``b, j``): probabilities rounded to
    6 decimals, ids as ints. ``NO_TOPK`` when ``host`` is empty (tracing off)."""
    if not host:
        return NO_TOPK
    probs, ids = host
    return np.round(probs[index], 6).tolist(), ids[index].astype(np.int64).tolist()


def trace_step(ent=NAN, mp=NAN, mg=NAN, *, routed: bool, token: int, small_argmax: int = -1,
               large_argmax: int = -1, source: str, small_topk=NO_TOPK, large_topk=NO_TOPK) -> TraceStep:
    """A ``TraceStep`` (position set by ``Row.emit``); ``small_topk`` / ``large_topk``: ``(probs, ids)``
    from :func:`topk_row`, or ``NO_TOPK``."""
    return TraceStep(position=0, small_entropy=float(ent), small_max_prob=float(mp), small_margin=float(mg),
                     routed=bool(routed), token=int(token), small_argmax=int(small_argmax),
                     large_argmax=int(large_argmax), source=source,
                     small_topk_probs=small_topk[0], small_topk_ids=small_topk[1],
                     large_topk_probs=large_topk[0], large_topk_ids=large_topk[1])
