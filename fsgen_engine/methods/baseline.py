"""``large`` and ``small``: plain decoding with one model (the baselines)."""
from __future__ import annotations

import torch

from fsgen_engine import ops
from fsgen_engine.methods.base import Method, topk_row, trace_step
from fsgen_engine.runtime.executor import to_host


class LargeOnly(Method):
    """Every token from the large model; the small model never runs (trace stats are NaN)."""

    model_ids = ("large",)

    def step(self, rows):
        z = self.runner.extend("large", rows)[:, 0]
        tok = self.sampler.choose(z)
        am = tok if self.sampler.greedy else torch.argmax(z, dim=-1)
        tok_h, am_h, *tl_h = to_host(tok, am, *self.topk(z))
        for b, r in enumerate(rows):
            r.stats.large_calls += 1
            r.emit([int(tok_h[b])], [trace_step(routed=True, token=tok_h[b], large_argmax=am_h[b], source="large",
                                                large_topk=topk_row(tl_h, b))], self.rules)


class SmallOnly(Method):
    """Every token from the small model (``system1`` is ``small``; ``small_ft`` for a fine-tuned run)."""

    model_ids = ("small",)

    def step(self, rows):
        z = self.runner.extend("small", rows)[:, 0]
        st = ops.token_stats(z)
        tok = st.argmax if self.sampler.greedy else self.sampler.choose(z)
        h = to_host(tok, st.entropy, st.max_prob, st.margin, st.argmax, *self.topk(z))
        for b, r in enumerate(rows):
            r.emit([int(h[0][b])], [trace_step(h[1][b], h[2][b], h[3][b], routed=False, token=h[0][b],
                                               small_argmax=h[4][b], source="small",
                                               small_topk=topk_row(h[5:], b))], self.rules)
