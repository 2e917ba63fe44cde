"""``oracle``, ``contrastive`` and ``proxy``: System 1 steps, a router picks rows for System 2.

One step (docs/methods.md section 1): System 1 (the small model; the small fine-tuned one for proxy)
feeds its pending tokens -> ``ops.token_stats`` once -> router mask -> the fired rows' large model
(and, for proxy, the small base model) catch up over every token they have not seen plus the
current position in one ragged extend -> fused (or large) logits -> token. A fired step is a
mismatch when its token differs from the reference argmax (System 1's; proxy: the small base
model's by default, ``mismatch_reference="small_ft"`` for System 1's).
Host syncs per step: one when no row fires (System 1's tokens and the router's decisions are read
together) or the router is ``always``; two when a dynamic router fires (the fired rows' tokens).
With ``trace_topk`` the top-K distributions ride along in those same copies: System 1's with its
statistics, the large model's (its own logits, not the fused ones) with the fired rows' tokens.
"""
from __future__ import annotations

import numpy as np
import torch

from fsgen_engine import ops
from fsgen_engine.methods.base import Method, StepResult, topk_rows
from fsgen_engine.runtime.executor import to_host


class Routed(Method):
    def __init__(self, cfg, runner, sampler):
        super().__init__(cfg, runner, sampler)
        self.proxy = cfg.method == "proxy"
        self.system1 = "small_ft" if self.proxy else "small"
        self.model_ids = ("small_ft", "large", "small") if self.proxy else ("small", "large")
        self.source = "large" if cfg.method == "oracle" else "fused"

    def _system2(self, frows, z1, am1):
        """``[tokens, large-model argmax, mismatch-reference argmax, *large top-K]`` (``[F]``, top-K
        ``[F, k]`` or nothing when tracing is off) of the fired rows (``z1``/``am1``: their System-1
        logits and argmax)."""
        zl = self.runner.extend("large", frows)[:, 0]
        ref = am1
        if self.cfg.method == "oracle":
            fz = zl
        elif self.proxy:
            zb = self.runner.extend("small", frows)[:, 0]
            fz = ops.fuse_logits(zl, zb, z1, method="proxy", alpha=self.cfg.alpha)
            if self.cfg.mismatch_reference == "small":
                ref = torch.argmax(zb, dim=-1)
        else:
            fz = ops.fuse_logits(zl, z1, method=self.cfg.fuse, alpha=self.cfg.alpha, beta=self.cfg.beta,
                                 weights=self.cfg.weights)
        return [self.sampler.choose(fz), torch.argmax(zl, dim=-1), ref, *self.topk(zl)]

    def step(self, rows):
        B = len(rows)
        z = self.runner.extend(self.system1, rows)[:, 0]
        st = ops.token_stats(z)
        s1 = (st.entropy, st.max_prob, st.margin, st.argmax, *self.topk(z))  # + System 1's top-K when traced
        router = self.cfg.router
        large_tk = [None] * B
        if router.static:  # always: every row goes to System 2; one sync
            tok, lam, ref, *tl = self._system2(rows, z, st.argmax)
            h_tok, h_lam, h_ref, *h = to_host(tok, lam, ref, *s1, *tl)
            h_s1, h_tl = h[:len(s1)], h[len(s1):]
            fired = list(range(B))
            large_tk = [topk_rows(h_tl, b) for b in fired]
        else:
            # System 1's own token for every row, read with the router's decisions in one sync; only
            # a step where the router fires pays a second sync, for System 2's tokens of those rows
            tok1 = st.argmax if self.sampler.greedy else self.sampler.choose(z)
            mask = [] if router.static is False else [router(z, st)]
            h_tok, *h = to_host(tok1, *s1, *mask)
            h_s1 = h[:len(s1)]
            fired = np.flatnonzero(h[len(s1)]).tolist() if mask else []
            h_lam = np.full(B, -1.0)
            h_ref = h_s1[3].copy()
            if fired:
                if len(fired) == B:
                    part = self._system2(rows, z, st.argmax)
                else:
                    idx = self.runner.tensor(fired)
                    part = self._system2([rows[i] for i in fired], z.index_select(0, idx),
                                         st.argmax.index_select(0, idx))
                f_tok, f_lam, f_ref, *f_tl = to_host(*part)
                h_tok = h_tok.copy()
                h_tok[fired], h_lam[fired], h_ref[fired] = f_tok, f_lam, f_ref
                for f, b in enumerate(fired):
                    large_tk[b] = topk_rows(f_tl, f)
        small = np.stack(h_s1[:4], axis=1)     # [B, 4] entropy, max_prob, margin, argmax
        fired_set = set(fired)
        out = []
        for b in range(B):
            f = b in fired_set
            out.append(StepResult(tokens=[h_tok[b]], source=[self.source if f else "small"], small=small[b:b + 1],
                                  large_argmax=h_lam[b:b + 1], small_topk=topk_rows(h_s1[4:], b),
                                  large_topk=large_tk[b], large_calls=int(f),
                                  mismatches=int(f and int(h_tok[b]) != int(h_ref[b]))))
        return out
