"""``oracle``, ``contrastive`` and ``proxy``: System 1 steps, a router picks rows for System 2.

One step (fsgen-methods section 1): System 1 (the small model; the small fine-tuned one for proxy)
feeds its pending tokens -> ``ops.token_stats`` once -> router mask -> the fired rows' large model
(and, for proxy, the small base model) catch up over every token they have not seen plus the
current position in one ragged extend -> fused (or large) logits -> token. A fired step is a
mismatch when its token differs from the reference argmax (System 1's; proxy: the small base
model's by default, ``mismatch_reference="small_ft"`` for System 1's).
Host syncs per step: one to read the tokens, plus one to read a dynamic router's decisions.
"""
from __future__ import annotations

import torch

from fsgen_engine import ops
from fsgen_engine.methods.base import Method, trace_step
from fsgen_engine.runtime.executor import to_host


class Routed(Method):
    def __init__(self, cfg, runner, sampler, rules):
        super().__init__(cfg, runner, sampler, rules)
        self.proxy = cfg.method == "proxy"
        self.system1 = "small_ft" if self.proxy else "small"
        self.model_ids = ("small_ft", "large", "small") if self.proxy else ("small", "large")
        self.source = "large" if cfg.method == "oracle" else "fused"

    def _fused(self, frows, z1):
        """System-2 logits ``[F, V]`` for the fired rows (``z1``: their System-1 logits)."""
        zl = self.runner.extend("large", frows)[:, 0]
        zb = None
        if self.cfg.method == "oracle":
            fz = zl
        elif self.proxy:
            zb = self.runner.extend("small", frows)[:, 0]
            fz = ops.fuse_logits(zl, zb, z1, method="proxy", alpha=self.cfg.alpha)
        else:
            fz = ops.fuse_logits(zl, z1, method=self.cfg.fuse, alpha=self.cfg.alpha, beta=self.cfg.beta,
                                 weights=self.cfg.weights)
        return fz, zl, zb

    def step(self, rows):
        B = len(rows)
        z = self.runner.extend(self.system1, rows)[:, 0]
        st = ops.token_stats(z)
        router = self.cfg.router
        if router.static is not None:
            fired = list(range(B)) if router.static else []
        else:
            fired = torch.nonzero(router(z, st)).flatten().tolist()  # the step's router sync
        dev = z.device
        large_am = torch.full((B,), -1, dtype=torch.int64, device=dev)
        ref_am = st.argmax
        if fired:
            frows = [rows[i] for i in fired]
            if len(fired) == B:
                fz, zl, zb = self._fused(frows, z)
                final = fz
                large_am = torch.argmax(zl, dim=-1)
                if zb is not None and self.cfg.mismatch_reference == "small":
                    ref_am = torch.argmax(zb, dim=-1)
            else:
                idx = self.runner.tensor(fired)
                fz, zl, zb = self._fused(frows, z.index_select(0, idx))
                final = z.clone()
                final[idx] = fz
                large_am[idx] = torch.argmax(zl, dim=-1)
                if zb is not None and self.cfg.mismatch_reference == "small":
                    ref_am = st.argmax.clone()
                    ref_am[idx] = torch.argmax(zb, dim=-1)
        else:
            final = z
        tok = self.sampler.choose(final)
        h_tok, h_ent, h_mp, h_mg, h_am, h_lam, h_ref = to_host(tok, st.entropy, st.max_prob, st.margin, st.argmax,
                                                               large_am, ref_am)
        fired_set = set(fired)
        for b, r in enumerate(rows):
            t = int(h_tok[b])
            f = b in fired_set
            if f:
                r.stats.large_calls += 1
                r.stats.mismatches += int(t != int(h_ref[b]))
            r.emit([t], [trace_step(h_ent[b], h_mp[b], h_mg[b], routed=f, token=t, small_argmax=h_am[b],
                                    large_argmax=h_lam[b], source=self.source if f else "small")], self.rules)
