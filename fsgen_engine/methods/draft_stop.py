"""``draft_stop``: when a speculative row stops drafting (System 1 is unsure of the token it just drafted).

The rule is a router (``fsgen_engine.routers``' grammar: ``entropy:T``, ``max_prob:T``, ``margin:T``,
``learned:PATH``, also ``never`` = plain K and ``always`` = draft nothing): it reads the drafter's
logits and the ``ops.token_stats`` the draft step computes anyway, and returns a ``[B]`` bool on the
device. Where it fires at draft position ``j``, the token drawn there is discarded and the row's
round drafts ``j`` tokens (0: the verification pass is one plain large-model step for that row).

Stop reasons (``StepResult.draft_stop``, the trace's ``rounds``): ``"rule"`` (the rule fired),
``"k"`` (the row's K reached), ``"eos"`` (an end-of-sequence token was drafted: drafting past it is
wasted), ``"skip"`` (the row is backing off after a rule fire on its first draft, ``MAX_SKIP_ROUNDS``;
the drafter did not run). Every decision depends only on the drafter's own state (its statistics now
and its past stop reasons), never on the target's tokens, so greedy verification still returns the
large model's greedy tokens and rejection sampling stays lossless.

Host reads. On CPU a tensor read is not a device sync, so the draft loop reads which rows still draft
after each token: stopped rows leave the draft batch and the loop ends when none is left. On CUDA the
loop never waits for the device: :class:`AlivePoll` copies "any row still drafting" without blocking
after each draft step and the loop ends once a copy has arrived saying no row is; until then stopped
rows keep running in the batch, masked (their tokens past the stop are never verified).
"""
from __future__ import annotations

import torch

from fsgen_engine.routers import Router, parse_router

STOP_K, STOP_RULE, STOP_EOS, STOP_SKIP = 0, 1, 2, 3
STOP_NAMES = ("k", "rule", "eos", "skip")
# Back-off after a round whose rule fired on the first draft (target = the large model only): the row
# skips the drafter for the next s rounds (plain large steps), s = 1, 2, 4, ... up to this (the default
# of MethodOptions.draft_backoff, which sets the cap; 0 turns the back-off off), reset to 1 by a round
# that drafts. Where System 1 is unsure for long stretches the drafter step whose only use
# is to fire the rule stops being paid on every token, so the round cost tends to one large step.
MAX_SKIP_ROUNDS = 8
DRAFT_STOP_FORMS = "entropy:T, max_prob:T, margin:T, learned:PATH (or never / always)"


def parse_draft_stop(spec) -> Router | None:
    """``draft_stop`` option -> a router (None: no gate, today's fixed / adaptive K).

    Raises ValueError naming the argument for anything the router grammar rejects."""
    if spec is None:
        return None
    if isinstance(spec, Router):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"draft_stop={spec!r} must be a string: {DRAFT_STOP_FORMS}")
    try:
        return parse_router(spec)
    except ValueError as exc:
        raise ValueError(f"draft_stop={spec!r}: {exc}; draft_stop takes {DRAFT_STOP_FORMS}") from None


class AlivePoll:
    """Non-blocking "is any row still drafting?" for CUDA: ``push`` starts a copy of ``alive.any()``
    into pinned host memory, ``none_alive`` is True only once the last pushed copy has arrived and
    says no row drafts. Never a sync: an unfinished copy just means "keep drafting"."""

    def __init__(self, device: torch.device):
        self.buf = torch.ones(1, dtype=torch.bool).pin_memory()
        self.event = torch.cuda.Event()
        self.pushed = False

    def push(self, alive: torch.Tensor) -> None:
        self.buf.copy_(alive.any().view(1), non_blocking=True)
        self.event.record()
        self.pushed = True

    def none_alive(self) -> bool:
        return self.pushed and self.event.query() and not bool(self.buf[0])
