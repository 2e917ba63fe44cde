"""``speculative``: System 1 drafts K tokens, the target verifies K+1 positions in one pass.

Target: the large model (``target=None``) or a fused distribution computed per position from the
large and small (and small fine-tuned) logits of the K+1 positions (``target="contrastive"`` /
``"proxy"``; the proxy drafter is the small fine-tuned model). ``ops.verify`` accepts greedily or by
lossless rejection sampling (drafts drawn exactly from the filtered draft distribution ``q`` passed
as ``draft_probs``), so the output has the target's distribution. Adaptive K (per row): +1 after a
fully accepted round, -1 after a rejection, within [1, 2K]. Counts: large_calls = rounds,
mismatches = rounds with a rejected draft, draft_tokens / accepted_draft_tokens.
One host sync per round (tokens, acceptance, trace statistics together; with ``trace_topk`` also the
drafter's top-K at each draft position and the large model's own top-K at the K+1 verified ones).

``draft_stop`` (methods/draft_stop.py): each row drafts only while System 1 is sure, up to its K;
the round is ``Speculative._gated_step`` (ragged per-row draft lengths, ``verify``'s ``num_draft``).
Without it the round is exactly the fixed / adaptive K round above.
"""
from __future__ import annotations

import torch

from fsgen_engine import ops
from fsgen_engine.methods.base import Method, StepResult, stack_topk, topk_rows
from fsgen_engine.methods.draft_stop import parse_draft_stop
from fsgen_engine.runtime.executor import to_host

# KV slots a row may need past its tokens beyond the kmax drafts of a round (slack; see engine.py)
LOOKAHEAD_SLACK = 2


class Speculative(Method):
    def __init__(self, cfg, runner, sampler):
        super().__init__(cfg, runner, sampler)
        self.target = cfg.target
        self.drafter = "small_ft" if self.target == "proxy" else "small"
        ids = [self.drafter, "large"] + (["small"] if self.target == "proxy" else [])
        self.model_ids = tuple(ids)
        self.K = int(cfg.num_draft_tokens)
        self.kmax = 2 * self.K if cfg.adaptive_draft else self.K
        self.lookahead = self.kmax + LOOKAHEAD_SLACK
        self.k: dict[int, int] = {}   # seq_id -> the row's current K (adaptive)
        self.gate = parse_draft_stop(cfg.draft_stop)
        self.eos = tuple(int(e) for e in cfg.extra.get("eos_ids", ()))
        self.skip: dict[int, int] = {}      # draft_stop back-off: seq_id -> rounds left without drafting
        self.backoff: dict[int, int] = {}   # seq_id -> the next back-off length

    def start_row(self, row):
        self.k[row.seq_id] = self.K

    def step(self, rows):
        if self.gate is not None:
            from fsgen_engine.methods.gated import gated_step

            return gated_step(self, rows)
        return self._fixed_step(rows)

    def _fixed_step(self, rows):
        run, samp = self.runner, self.sampler
        B = len(rows)
        ks = [self.k[r.seq_id] for r in rows]
        K = max(ks)
        fused = self.target is not None
        drafts = torch.empty((B, K), dtype=torch.int64, device=run.device)
        stats, qs, zs, tks = [], [], [], []
        for j in range(K):
            if j == 0:
                z = run.extend(self.drafter, rows)[:, 0]
            else:
                z = run.extend(self.drafter, rows, tail=drafts[:, j - 1:j])[:, 0]
            st = ops.token_stats(z)
            stats.append(torch.stack([st.entropy, st.max_prob, st.margin, st.argmax.float()], dim=1))
            tks.append(self.topk(z))
            if samp.greedy:
                d = st.argmax
            else:
                q = samp.probs(z)
                qs.append(q)
                d = samp.draw(q)
            drafts[:, j] = d
            if fused:
                zs.append(z)
        uniform = all(k == K for k in ks)
        counts = None if uniform else ks
        n_log = K + 1 if uniform else [k + 1 for k in ks]
        num_draft = None if uniform else run.tensor(ks)
        q = torch.stack(qs, dim=1) if qs else None
        if samp.greedy and not fused and not self.cfg.trace_topk and run.merge_argmax("large", B * (K + 1)):
            # tensor parallel, greedy: verification needs the large model's argmax only, merged from the
            # ranks' (max, id) pairs instead of gathering [B, K+1, V] logits
            la = run.extend("large", rows, tail=drafts, tail_counts=counts, n_logits=n_log, output="argmax")
            na, nxt = ops.greedy_verify_sharded(drafts, la, num_draft)
            return self._results(rows, ks, drafts, na, nxt, stats, tks, la, [])
        zl = run.extend("large", rows, tail=drafts, tail_counts=counts, n_logits=n_log)
        if not fused:
            target = zl
        else:
            # the drafter's logits after its last draft complete its K+1 positions
            zs.append(run.extend(self.drafter, rows, tail=drafts[:, K - 1:K])[:, 0])
            z1 = torch.stack(zs, dim=1)
            V = zl.shape[-1]
            if self.target == "proxy":
                zb = run.extend("small", rows, tail=drafts, tail_counts=counts, n_logits=n_log)
                target = ops.fuse_logits(zl.reshape(-1, V), zb.reshape(-1, V), z1.reshape(-1, V), method="proxy",
                                         alpha=self.cfg.alpha)
            else:
                target = ops.fuse_logits(zl.reshape(-1, V), z1.reshape(-1, V), method=self.cfg.fuse,
                                         alpha=self.cfg.alpha, beta=self.cfg.beta, weights=self.cfg.weights)
            target = target.view(B, K + 1, -1)
        na, nxt = ops.verify(drafts, target, draft_probs=q, num_draft=num_draft, params=samp.params(B),
                             generator=samp.generator, _validated=True)
        return self._results(rows, ks, drafts, na, nxt, stats, tks, torch.argmax(zl, -1), self.topk(zl))

    def _results(self, rows, ks, drafts, na, nxt, stats, tks, large_argmax, large_topk) -> list[StepResult]:
        """One round's step results (one host copy), then every model drops what it was fed past the
        accepted drafts."""
        run = self.runner
        ts = stack_topk(tks)   # the drafter's top-K per draft position [B, K, k]
        h_d, h_na, h_nx, h_st, h_la, *h_tk = to_host(drafts, na, nxt, torch.stack(stats, dim=1),
                                                      large_argmax, *ts, *large_topk)
        h_ts, h_tl = h_tk[:len(ts)], h_tk[len(ts):]
        valid, out = [], []
        for b, r in enumerate(rows):
            a, k = int(h_na[b]), ks[b]
            # a accepted drafts, then the target's token; the drafter has no distribution at position K
            out.append(StepResult(tokens=[*h_d[b, :a], h_nx[b]], source=["draft"] * a + ["large"],
                                  small=h_st[b, :a + 1], large_argmax=h_la[b, :a + 1],
                                  small_topk=topk_rows(h_ts, b, a + 1), large_topk=topk_rows(h_tl, b, a + 1),
                                  large_calls=1, mismatches=int(a < k), drafted=k, accepted=a,
                                  wasted=k - a, draft_stop="k"))
            valid.append(len(r.tokens) + a)
            if self.cfg.adaptive_draft:
                self.k[r.seq_id] = min(k + 1, self.kmax) if a == k else max(k - 1, 1)
        # every model drops what it was fed past the accepted drafts (rejected drafts, unused lookahead)
        run.truncate(rows, valid, self.model_ids)
        return out
