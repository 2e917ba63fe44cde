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
from fsgen_engine.methods.base import Method, StepResult, topk_rows
from fsgen_engine.runtime.executor import to_host


class BiLD(Method):
    model_ids = ("small", "large")

    def __init__(self, cfg, runner, sampler):
        super().__init__(cfg, runner, sampler)
        self.small_run: dict[int, int] = {}   # seq_id -> small tokens emitted since the last large call
        self.checked: dict[int, int] = {}     # seq_id -> index of the first token the large model has not judged

    def start_row(self, row):
        self.small_run[row.seq_id] = 0
        self.checked[row.seq_id] = row.prompt_len

    def step(self, rows):
        run = self.runner
        z = run.extend("small", rows)[:, 0]
        st = ops.token_stats(z)
        router = self.cfg.router
        tok_s = self.sampler.choose(z) if not self.sampler.greedy else st.argmax
        h_tok, *h = to_host(tok_s, st.entropy, st.max_prob, st.margin, st.argmax, router(z, st), *self.topk(z))
        small, h_fire, h_ts = np.stack(h[:4], axis=1), h[4], h[5:]   # small: [B, 4] entropy, max_prob, margin, argmax
        fired = [b for b, r in enumerate(rows) if h_fire[b] or self.small_run[r.seq_id] >= self.cfg.bild_max_small]
        res = {}
        if fired:
            frows = [rows[b] for b in fired]
            # positions to score: the small tokens since the last call + the current position
            ns = [len(r.tokens) - self.checked[r.seq_id] + 1 for r in frows]
            zl = run.extend("large", frows, n_logits=ns)            # [F, nmax, V]
            F, nmax, V = zl.shape
            # token at entry j of row f is tokens[checked + j] (the current position has none: use 0)
            tgt = np.zeros((F, nmax), dtype=np.int64)
            for f, r in enumerate(frows):
                seg = r.tokens[self.checked[r.seq_id]:]
                tgt[f, :len(seg)] = seg
            logp = torch.log_softmax(zl.float(), dim=-1)
            nll = -logp.gather(2, run.tensor(tgt).view(F, nmax, 1)).squeeze(2)
            ltok = self.sampler.choose(zl.reshape(-1, V)).view(F, nmax)
            lam = torch.argmax(zl, dim=-1)
            h_nll, h_lt, h_lam, *h_tl = to_host(nll, ltok, lam, *self.topk(zl))
            for f, b in enumerate(fired):
                res[b] = (ns[f], h_nll[f], h_lt[f], h_lam[f], f)
        out = []
        for b, r in enumerate(rows):
            seq = r.seq_id
            if b not in res:
                self.small_run[seq] += 1
                out.append(StepResult(tokens=[h_tok[b]], source=["small"], small=small[b:b + 1],
                                      small_topk=topk_rows(h_ts, b)))
                continue
            n, nll, lt, lam, f = res[b]
            self.small_run[seq] = 0
            bad = np.nonzero(nll[:n - 1] > self.cfg.bild_rollback)[0]
            if bad.size:
                # roll back to the first small token the large model rejects; its token replaces it
                j = int(bad[0])
                pos = self.checked[seq] + j                  # index into r.tokens of the rejected token
                run.truncate([r], [pos], self.model_ids)
                self.checked[seq] = pos + 1
                out.append(StepResult(tokens=[lt[j]], source=["rollback"], large_argmax=lam[j:j + 1],
                                      large_topk=_at(h_tl, f, j), rollback=pos - r.prompt_len, large_calls=1,
                                      mismatches=1))
            else:
                t = int(lt[n - 1])
                self.checked[seq] = len(r.tokens) + 1
                out.append(StepResult(tokens=[t], source=["large"], small=small[b:b + 1], large_argmax=lam[n - 1:n],
                                      small_topk=topk_rows(h_ts, b), large_topk=_at(h_tl, f, n - 1), large_calls=1,
                                      mismatches=int(t != int(small[b, 3]))))
        return out


def _at(host: list, f: int, j: int) -> tuple | None:
    """Position ``j`` of row ``f`` of ``[F, n, k]`` host top-K arrays as a one-position pair."""
    return (host[0][f, j:j + 1], host[1][f, j:j + 1]) if host else None
