"""``bild``: Big-Little Decoder (fallback + rollback).

Each step the small model proposes a token. Fallback (the large model is called) when the router
fires (default ``max_prob:0.6``: the small model's max probability < 0.6) or after
``bild_max_small`` (10) small tokens in a row. A call catches the large model up over every token
since its last call in one extend and scores each small token emitted since then: the first one with
``-log p_large(token) > bild_rollback`` (5) is cut back, with everything after it, and the large
model's token replaces it (source "rollback"); without a rollback the large model's token is emitted
at the current position (source "large"). Counts: large_calls = fallback calls; mismatches = fallback
tokens differing from the small argmax + rollbacks.
Top-K tracing: System 1's top-K rides with its statistics, the large model's (at the fallback or
rollback position only) with its scores; a rollback step keeps the replaced step's System-1 data.
"""
from __future__ import annotations

import numpy as np
import torch

from fsgen_engine import ops
from fsgen_engine.methods.base import Method, topk_row, trace_step
from fsgen_engine.runtime.executor import to_host


class BiLD(Method):
    model_ids = ("small", "large")

    def step(self, rows):
        run = self.runner
        z = run.extend("small", rows)[:, 0]
        st = ops.token_stats(z)
        router = self.cfg.router
        tok_s = self.sampler.choose(z) if not self.sampler.greedy else st.argmax
        h_tok, h_ent, h_mp, h_mg, h_am, h_fire, *h_ts = to_host(tok_s, st.entropy, st.max_prob, st.margin,
                                                                 st.argmax, router(z, st), *self.topk(z))
        fired = [b for b, r in enumerate(rows) if h_fire[b] or r.small_run >= self.cfg.bild_max_small]
        res = {}
        if fired:
            frows = [rows[b] for b in fired]
            # positions to score: the small tokens since the last call + the current position
            ns = [len(r.tokens) - r.checked + 1 for r in frows]
            zl = run.extend("large", frows, n_logits=ns)            # [F, nmax, V]
            F, nmax, V = zl.shape
            # token at entry j of row f is tokens[checked + j] (the current position has none: use 0)
            tgt = np.zeros((F, nmax), dtype=np.int64)
            for f, r in enumerate(frows):
                seg = r.tokens[r.checked:]
                tgt[f, :len(seg)] = seg
            logp = torch.log_softmax(zl.float(), dim=-1)
            nll = -logp.gather(2, run.tensor(tgt).view(F, nmax, 1)).squeeze(2)
            ltok = self.sampler.choose(zl.reshape(-1, V)).view(F, nmax)
            lam = torch.argmax(zl, dim=-1)
            h_nll, h_lt, h_lam, *h_tl = to_host(nll, ltok, lam, *self.topk(zl))
            for f, b in enumerate(fired):
                res[b] = (ns[f], h_nll[f], h_lt[f], h_lam[f], f)
        for b, r in enumerate(rows):
            if b not in res:
                r.small_run += 1
                r.emit([int(h_tok[b])], [trace_step(h_ent[b], h_mp[b], h_mg[b], routed=False, token=h_tok[b],
                                                    small_argmax=h_am[b], source="small",
                                                    small_topk=topk_row(h_ts, b))], self.rules)
                continue
            n, nll, lt, lam, f = res[b]
            r.stats.large_calls += 1
            r.small_run = 0
            bad = np.nonzero(nll[:n - 1] > self.cfg.bild_rollback)[0]
            if bad.size:
                j = int(bad[0])
                pos = r.checked + j                      # index into r.tokens of the rejected token
                gen_idx = pos - r.prompt_len
                old = r.trace.step(gen_idx)
                r.cut(gen_idx)
                run.truncate([r], [pos], self.model_ids)
                r.checked = pos + 1
                r.stats.mismatches += 1
                r.emit([int(lt[j])], [trace_step(old.small_entropy, old.small_max_prob, old.small_margin,
                                                 routed=True, token=lt[j], small_argmax=old.small_argmax,
                                                 large_argmax=lam[j], source="rollback",
                                                 small_topk=(old.small_topk_probs, old.small_topk_ids),
                                                 large_topk=topk_row(h_tl, f, j))], self.rules)
            else:
                t = int(lt[n - 1])
                r.stats.mismatches += int(t != int(h_am[b]))
                r.checked = len(r.tokens) + 1
                r.emit([t], [trace_step(h_ent[b], h_mp[b], h_mg[b], routed=True, token=t, small_argmax=h_am[b],
                                        large_argmax=lam[n - 1], source="large", small_topk=topk_row(h_ts, b),
                                        large_topk=topk_row(h_tl, f, n - 1))], self.rules)
