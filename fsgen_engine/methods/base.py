"""What a method is: a policy that advances a batch of rows using the runtime's step primitives.

``Method.step(rows)`` advances every row by at least one token (or one speculative round) and
appends the emitted tokens with ``Row.emit`` (which applies the stop rules). ``model_ids`` lists the
models whose KV the method uses (the engine reserves pages for each).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from fsgen_engine.outputs import TraceStep

NAN = math.nan


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
    extra: dict = field(default_factory=dict)


class Method:
    model_ids: tuple[str, ...] = ()
    lookahead: int = 0  # extra KV slots a row may need beyond prompt + max_new (drafts)

    def __init__(self, cfg: MethodConfig, runner, sampler, rules):
        self.cfg = cfg
        self.runner = runner
        self.sampler = sampler
        self.rules = rules

    def start_row(self, row) -> None:
        """Called when a row is admitted."""

    def step(self, rows: list) -> None:
        raise NotImplementedError


def trace_step(ent=NAN, mp=NAN, mg=NAN, *, routed: bool, token: int, small_argmax: int = -1,
               large_argmax: int = -1, source: str) -> TraceStep:
    return TraceStep(position=0, small_entropy=float(ent), small_max_prob=float(mp), small_margin=float(mg),
                     routed=bool(routed), token=int(token), small_argmax=int(small_argmax),
                     large_argmax=int(large_argmax), source=source)
