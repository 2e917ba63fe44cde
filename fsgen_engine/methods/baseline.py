"""``large`` and ``small``: plain decoding with one model (the baselines)."""
from __future__ import annotations

import numpy as np
import torch

from fsgen_engine import ops
from fsgen_engine.methods.base import Method, StepResult, topk_rows
from fsgen_engine.runtime.executor import to_host


class LargeOnly(Method):
    """Every token from the large model; the small model never runs (trace stats are NaN)."""

    model_ids = ("large",)

    def step(self, rows):
        if self.sampler.greedy and not self.cfg.trace_topk and self.runner.merge_argmax("large", len(rows)):
            # tensor parallel, greedy: the ranks merge (max, id) pairs; no logits are gathered
            (tok_h,) = to_host(self.runner.extend("large", rows, output="argmax")[:, 0])
            am_h, tl_h = tok_h, []
        else:
            z = self.runner.extend("large", rows)[:, 0]
            tok = self.sampler.choose(z)
            am = tok if self.sampler.greedy else torch.argmax(z, dim=-1)
            tok_h, am_h, *tl_h = to_host(tok, am, *self.topk(z))
        return [StepResult(tokens=[tok_h[b]], source=["large"], large_argmax=am_h[b:b + 1],
                           large_topk=topk_rows(tl_h, b), large_calls=1) for b in range(len(rows))]


class SmallOnly(Method):
    """Every token from the small model (``system1`` is ``small``; ``small_ft`` for a fine-tuned run)."""

    model_ids = ("small",)

    def step(self, rows):
        z = self.runner.extend("small", rows)[:, 0]
        st = ops.token_stats(z)
        tok = st.argmax if self.sampler.greedy else self.sampler.choose(z)
        tok_h, *h = to_host(tok, st.entropy, st.max_prob, st.margin, st.argmax, *self.topk(z))
        small = np.stack(h[:4], axis=1)     # [B, 4] entropy, max_prob, margin, argmax
        return [StepResult(tokens=[tok_h[b]], source=["small"], small=small[b:b + 1], small_topk=topk_rows(h[4:], b))
                for b in range(len(rows))]
