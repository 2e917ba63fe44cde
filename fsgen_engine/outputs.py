"""What a generation returns, and the per-token trace every analysis is recomputed from.

Trace files (``--out traces.jsonl``) hold one JSON object per generation: ``GenerationOutput.to_dict()``.
The trace is stored by column (one list per field) to keep files small. The top-K distribution
columns (``TOPK_FIELDS``, ``generate(..., trace_topk=K)``) are present only when a generation
recorded them, so traces without them stay as small as before and older files still load.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Iterable, Iterator

# Where an emitted token came from.
SOURCES = (
    "small",       # System 1 token, the router did not fire (or method=small)
    "large",       # System 2 token (method=large, oracle, or a speculative correction/bonus)
    "fused",       # token from fused logits (contrastive / proxy) after the router fired
    "draft",       # accepted speculative draft token
    "rollback",    # BiLD: the large model's token replacing a rolled-back small token
)


@dataclass
class TraceStep:
    """One emitted token.

    position: index of the token in the generated continuation (0-based).
    small_entropy / small_max_prob / small_margin: statistics of System 1's distribution at this
        step (nats; probabilities); NaN when System 1 did not run for this token (method=large).
    routed: whether System 2 was called for this token (router fired / verification covered it).
    token: the emitted token id.
    small_argmax: System 1's greedy token at this step (-1 when it did not run).
    large_argmax: the large model's own greedy token at this step (its logits before any fusion), -1 when
        it did not run.
    source: one of SOURCES.
    small_topk_probs / small_topk_ids: System 1's top-K distribution at this step (probabilities
        sorted descending, rounded to 6 decimals; their token ids); None when not recorded
        (``trace_topk=0``) or System 1 produced no distribution for this position.
    large_topk_probs / large_topk_ids: the same for System 2's own logits (never fused ones); None
        when System 2 did not run for this position.
    """

    position: int
    small_entropy: float
    small_max_prob: float
    small_margin: float
    routed: bool
    token: int
    small_argmax: int
    large_argmax: int
    source: str
    small_topk_probs: list[float] | None = None
    small_topk_ids: list[int] | None = None
    large_topk_probs: list[float] | None = None
    large_topk_ids: list[int] | None = None


# optional columns: stored only when a generation recorded them; a step without data holds []
TOPK_FIELDS = ("small_topk_probs", "small_topk_ids", "large_topk_probs", "large_topk_ids")
# required columns: every trace has them
TRACE_FIELDS = tuple(k for k in TraceStep.__dataclass_fields__ if k not in TOPK_FIELDS)
# per speculative round (Trace.rounds)
ROUND_FIELDS = ("drafted", "stop", "accepted")


@dataclass
class Trace:
    """Column-wise per-token trace; ``len(trace)`` is the number of emitted tokens.

    ``columns`` always holds ``TRACE_FIELDS``; a ``TOPK_FIELDS`` column is created the first time a
    step carries it (earlier steps back-filled with ``[]``) and then gets ``[]`` for steps without it.
    """

    columns: dict[str, list] = field(default_factory=lambda: {k: [] for k in TRACE_FIELDS})
    # speculative rounds, by column (``ROUND_FIELDS``): drafted length, why drafting stopped
    # ("k" / "rule" / "eos", methods/draft_stop.py), accepted drafts; None for other methods
    rounds: dict[str, list] | None = None

    def add_round(self, drafted: int, stop: str, accepted: int) -> None:
        """Record one speculative round (see ``rounds``)."""
        if self.rounds is None:
            self.rounds = {k: [] for k in ROUND_FIELDS}
        for k, v in zip(ROUND_FIELDS, (int(drafted), str(stop), int(accepted))):
            self.rounds[k].append(v)

    def append(self, step: TraceStep) -> None:
        n = len(self)
        for k in TRACE_FIELDS:
            self.columns[k].append(getattr(step, k))
        for k in TOPK_FIELDS:
            v = getattr(step, k)
            col = self.columns.get(k)
            if col is None:
                if v is None:
                    continue
                col = self.columns[k] = [[] for _ in range(n)]
            col.append([] if v is None else list(v))

    def truncate(self, n: int) -> None:
        for k in self.columns:
            del self.columns[k][n:]

    def __len__(self) -> int:
        return len(self.columns["token"])

    @property
    def has_topk(self) -> bool:
        """Whether any top-K distribution column was recorded."""
        return any(k in self.columns for k in TOPK_FIELDS)

    def step(self, i: int) -> TraceStep:
        """Step ``i`` as a :class:`TraceStep` (a top-K field is None where the step has no data)."""
        d = {k: self.columns[k][i] for k in TRACE_FIELDS}
        for k in TOPK_FIELDS:
            v = self.columns[k][i] if k in self.columns else None
            d[k] = list(v) if v else None
        return TraceStep(**d)

    def __iter__(self) -> Iterator[TraceStep]:
        for i in range(len(self)):
            yield self.step(i)

    def to_dict(self) -> dict[str, list]:
        d = {k: list(v) for k, v in self.columns.items()}
        if self.rounds is not None:
            d["rounds"] = {k: list(v) for k, v in self.rounds.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, list]) -> "Trace":
        missing = [k for k in TRACE_FIELDS if k not in d]
        if missing:
            raise ValueError(f"trace is missing columns {missing}; expected {list(TRACE_FIELDS)}")
        cols = {k: list(d[k]) for k in TRACE_FIELDS + TOPK_FIELDS if k in d}
        n = len(cols["token"])
        bad = [k for k in TOPK_FIELDS if k in cols and len(cols[k]) != n]
        if bad:
            raise ValueError(f"trace columns {bad} must have one entry per token ({n}; [] for a step "
                             f"without data)")
        rounds = d.get("rounds")
        if rounds is not None:
            rounds = {k: list(rounds.get(k, [])) for k in ROUND_FIELDS}
        return cls(cols, rounds)


@dataclass
class GenerationStats:
    """Counts of one generation (definitions: docs/methods.md section 4).

    total_tokens: tokens emitted. large_calls: steps where System 2 ran (speculative: verification
    rounds). mismatches: System-2 steps whose token differs from System 1's argmax (speculative:
    rejected drafts). draft_tokens / accepted_draft_tokens: speculative drafting counts.
    draft_stops: speculative rounds whose drafting a ``draft_stop`` rule ended (System 1 unsure).
    wasted_draft_tokens: draft-model tokens not emitted as accepted drafts: rejected drafts plus the
    tokens a ``draft_stop`` rule fired on (computed, then discarded).
    wall_time_s, tokens_per_s: wall time of the generate call this output belongs to (shared by
    the batch) and this row's tokens over it.
    """

    total_tokens: int = 0
    large_calls: int = 0
    mismatches: int = 0
    draft_tokens: int = 0
    accepted_draft_tokens: int = 0
    draft_stops: int = 0
    wasted_draft_tokens: int = 0
    wall_time_s: float = 0.0
    tokens_per_s: float = 0.0

    @property
    def collaboration_frequency(self) -> float:
        return self.mismatches / self.total_tokens if self.total_tokens else 0.0

    @property
    def large_call_fraction(self) -> float:
        return self.large_calls / self.total_tokens if self.total_tokens else 0.0


@dataclass
class GenerationOutput:
    """Result for one prompt: ``token_ids`` (generated continuation only), its ``text``,
    ``finish_reason`` ("eos" | "stop" | "length"), ``stats`` and per-token ``trace``."""

    token_ids: list[int]
    text: str
    finish_reason: str
    stats: GenerationStats
    trace: Trace
    prompt: str | list[int] | None = None
    method: str = ""
    router: str = ""
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "prompt": self.prompt,
            "method": self.method,
            "router": self.router,
            "text": self.text,
            "token_ids": list(self.token_ids),
            "finish_reason": self.finish_reason,
            "stats": asdict(self.stats),
            "trace": self.trace.to_dict(),
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "GenerationOutput":
        return cls(
            token_ids=list(d["token_ids"]),
            text=d.get("text", ""),
            finish_reason=d.get("finish_reason", ""),
            stats=GenerationStats(**d.get("stats", {})),
            trace=Trace.from_dict(d["trace"]),
            prompt=d.get("prompt"),
            method=d.get("method", ""),
            router=d.get("router", ""),
            meta=d.get("meta", {}),
        )


def write_traces(path, outputs: Iterable[GenerationOutput]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for out in outputs:
            f.write(json.dumps(out.to_dict()) + "\n")


def read_traces(path) -> list[GenerationOutput]:
    with open(path, encoding="utf-8") as f:
        return [GenerationOutput.from_dict(json.loads(line)) for line in f if line.strip()]
