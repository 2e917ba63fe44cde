"""One speculative round with a ``draft_stop`` rule: each row drafts while System 1 is sure, up to its K.

Per draft position ``j`` (all on the device, from the ``token_stats`` the draft step computes anyway):
the rule fires -> the row drafted ``j`` tokens, stop reason ``rule`` (the token drawn at ``j`` is
discarded); else the token is kept, and drafting stops after it if it is an EOS (``eos``) or the
row's K is reached (``k``). ``length [B]`` is therefore a function of the drafter's own logits only.

Verification. On CPU the host knows each row's length for free, so the large model is fed ragged
drafts (``tail_counts``; a row of length 0 feeds nothing and is one plain large step) and, when no row
drafted anything, the round is one large step sampled with ``Sampler.choose``. On CUDA every row is
fed the round's ``D`` drafts (one uniform, graph-captured verification) and ``verify``'s ``num_draft``
(= ``length``, on the device) cuts each row; no extra host sync either way: the lengths, reasons and
statistics come back with the round's one ``to_host``.

Fused targets need the drafter's logits at each row's positions ``0..length``: position ``length`` is
the step where the rule fired (already computed) or, for rows stopped by ``k`` / ``eos``, one more
drafter forward over those rows' last draft (as the fixed-K round does for every row).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from fsgen_engine import ops
from fsgen_engine.methods.base import StepResult, topk_rows
from fsgen_engine.methods.draft_stop import (STOP_EOS, STOP_K, STOP_NAMES, STOP_RULE, STOP_SKIP,
                                             AlivePoll)
from fsgen_engine.runtime.executor import to_host


def _put(full: torch.Tensor | None, j: int, idx: torch.Tensor | None, val: torch.Tensor, shape: tuple) -> torch.Tensor:
    """``full[:, j] = val`` (``idx``: the rows ``val`` holds, None = all); ``full`` created on first use."""
    if full is None:
        fill = math.nan if val.is_floating_point() else 0
        full = torch.full(shape + tuple(val.shape[1:]), fill, dtype=val.dtype, device=val.device)
    if idx is None:
        full[:, j] = val
    else:
        full[idx, j] = val
    return full


def host_reads_free(dev: torch.device) -> bool:
    """Whether reading the device's tensors costs no sync (CPU: the device is the host)."""
    return dev.type == "cpu"


def gated_step(m, rows: list) -> list[StepResult]:
    """A ``Speculative`` (``m``) round under ``m.gate``; returns one ``StepResult`` per row."""
    run, samp, gate = m.runner, m.sampler, m.gate
    dev = run.device
    B = len(rows)
    ks = [m.k[r.seq_id] for r in rows]
    K = max(ks)
    fused = m.target is not None
    exact = host_reads_free(dev)
    poll = None if exact else AlivePoll(dev)
    kcap = run.tensor(ks)
    eos = run.tensor(list(m.eos)) if m.eos else None
    # rows backing off skip the drafter this round (host state; fused targets need the drafter's logits)
    skip = [fused is False and m.skip.get(r.seq_id, 0) > 0 for r in rows]
    alive = run.tensor([not x for x in skip], dtype=torch.bool)
    length = torch.zeros(B, dtype=torch.int64, device=dev)
    why = run.tensor([STOP_SKIP if x else STOP_K for x in skip])
    drafts = torch.zeros((B, K), dtype=torch.int64, device=dev)
    stats = Z = Q = TP = TI = None     # [B, K(+1), ...] per-position buffers, filled as rows draft
    idx, live_rows, D = None, list(range(B)), 0
    for j in range(0 if all(skip) else K):
        if exact:
            live_rows = torch.nonzero(alive).flatten().tolist()
            if not live_rows:
                break
            idx = None if len(live_rows) == B else torch.tensor(live_rows, device=dev)
        elif j > 0 and poll.none_alive():
            break
        sub = rows if idx is None else [rows[i] for i in live_rows]
        if j == 0:
            z = run.extend(m.drafter, sub)[:, 0]
        else:
            z = run.extend(m.drafter, sub, tail=drafts[:, j - 1:j] if idx is None else drafts[idx, j - 1:j])[:, 0]
        st = ops.token_stats(z)
        s4 = torch.stack([st.entropy, st.max_prob, st.margin, st.argmax.float()], dim=1)
        fire = gate(z, st)
        if samp.greedy:
            d = st.argmax
        else:
            q = samp.probs(z)
            Q = _put(Q, j, idx, q, (B, K))
            d = samp.draw(q)
        stats = _put(stats, j, idx, s4, (B, K))
        if fused:
            Z = _put(Z, j, idx, z, (B, K + 1))
        tk = m.topk(z)
        if tk:
            TP, TI = _put(TP, j, idx, tk[0], (B, K)), _put(TI, j, idx, tk[1], (B, K))
        if idx is not None:   # back to [B]: rows outside the draft batch are stopped already
            fire = torch.ones(B, dtype=torch.bool, device=dev).index_copy_(0, idx, fire)
            d = torch.zeros(B, dtype=torch.int64, device=dev).index_copy_(0, idx, d)
        drafts[:, j] = d
        keep = alive & ~fire
        why = torch.where(alive & fire, STOP_RULE, why)
        length += keep
        at_eos = keep & torch.isin(d, eos) if eos is not None else torch.zeros_like(keep)
        why = torch.where(at_eos, STOP_EOS, why)
        alive = keep & ~at_eos & (kcap > j + 1)
        D = j + 1
        if poll is not None:
            poll.push(alive)
    if exact or D == 0:
        lens = length.tolist() if exact else [0] * B
        Dv = max(lens)                       # verified draft positions (CPU: ragged, as drafted)
        counts = lens
    else:
        lens, Dv, counts = None, D, None     # CUDA: every row fed D drafts, num_draft cuts on the device
    if fused and (not exact or Dv > 0):
        need = (why != STOP_RULE) & (length > 0)   # rows whose position `length` the drafter has not run
        if exact:
            nrows = torch.nonzero(need).flatten().tolist()
            if nrows:
                it = torch.tensor(nrows, device=dev)
                last = drafts[it].gather(1, (length[it] - 1)[:, None])
                z = run.extend(m.drafter, [rows[i] for i in nrows], tail=last)[:, 0]
                Z[it, length[it]] = z
        else:   # every row ran all D steps, so positions < D hold each row's own logits; add position D
            z = run.extend(m.drafter, rows, tail=drafts[:, D - 1:D])[:, 0]
            Z = _put(Z, D, None, z, (B, K + 1))
    if Dv == 0:   # no row drafted (CPU) or every row skipped: one plain large step (the target at position 0)
        zl = run.extend("large", rows)[:, :1]
        target = _target(m, rows, zl, None if not fused else Z[:, :1], drafts[:, :0], None)
        nxt = samp.choose(target[:, 0])
        na = torch.zeros(B, dtype=torch.int64, device=dev)
    else:
        n_log = Dv + 1 if counts is None else [c + 1 for c in counts]
        zl = run.extend("large", rows, tail=drafts[:, :Dv], tail_counts=counts, n_logits=n_log)
        target = _target(m, rows, zl, None if not fused else Z[:, :Dv + 1], drafts[:, :Dv], counts)
        q = None if Q is None else Q[:, :Dv].nan_to_num(0.0).contiguous()
        na, nxt = ops.verify(drafts[:, :Dv].contiguous(), target, draft_probs=q,
                             num_draft=length if counts is None else run.tensor(counts),
                             params=samp.params(B), generator=samp.generator, _validated=True)
    W = max(Dv, 1)
    if stats is None:
        stats = torch.full((B, W, 4), math.nan, device=dev)
    ts = [] if TP is None else [TP[:, :W + 1].nan_to_num(0.0), TI[:, :W + 1]]
    h_d, h_na, h_nx, h_len, h_why, h_st, h_la, *h_tk = to_host(
        drafts[:, :W], na, nxt, length, why, stats[:, :W + 1],
        torch.argmax(zl, -1), *ts, *m.topk(zl))
    h_ts, h_tl = h_tk[:len(ts)], h_tk[len(ts):]
    out, valid = [], []
    for b, r in enumerate(rows):
        a, L, reason = int(h_na[b]), int(h_len[b]), int(h_why[b])
        # System 1 has a distribution at position a unless the row drafted through to it (k / eos)
        n_small = a + 1 if (a < L or reason == STOP_RULE) else a
        small = h_st[b, :n_small]
        small_tk = topk_rows(h_ts, b, n_small) if h_ts else None
        out.append(StepResult(tokens=[*h_d[b, :a], h_nx[b]], source=["draft"] * a + ["large"],
                              small=small, large_argmax=h_la[b, :a + 1], small_topk=small_tk,
                              large_topk=topk_rows(h_tl, b, a + 1), large_calls=1, mismatches=int(a < L),
                              drafted=L, accepted=a, wasted=L - a + int(reason == STOP_RULE),
                              draft_stop=STOP_NAMES[reason]))
        valid.append(len(r.tokens) + a)
        sid = r.seq_id
        if reason == STOP_SKIP:
            m.skip[sid] -= 1
        elif reason == STOP_RULE and L == 0 and not fused and m.cfg.draft_backoff > 0:
            m.skip[sid] = min(m.backoff.get(sid, 1), m.cfg.draft_backoff)
            m.backoff[sid] = min(2 * m.skip[sid], m.cfg.draft_backoff)
        else:
            m.backoff[sid] = 1
        if m.cfg.adaptive_draft and reason != STOP_SKIP:
            k = ks[b]
            if a < L:
                m.k[r.seq_id] = max(k - 1, 1)
            elif reason == STOP_K:
                m.k[r.seq_id] = min(k + 1, m.kmax)
    run.truncate(rows, valid, m.model_ids)
    return out


def _target(m, rows, zl, z1, drafts, counts):
    """The verification target ``[B, n, V]``: the large logits, or the fused distribution of the large
    (and small base, for proxy) logits with the drafter's ``z1`` at the same positions."""
    if m.target is None:
        return zl
    B, n, V = zl.shape
    if m.target == "proxy":
        if drafts.shape[1] == 0:
            zb = m.runner.extend("small", rows)[:, :1]
        else:
            zb = m.runner.extend("small", rows, tail=drafts, tail_counts=counts,
                                 n_logits=n if counts is None else [c + 1 for c in counts])
        t = ops.fuse_logits(zl.reshape(-1, V), zb.reshape(-1, V), z1.reshape(-1, V), method="proxy", alpha=m.cfg.alpha)
    else:
        t = ops.fuse_logits(zl.reshape(-1, V), z1.reshape(-1, V), method=m.cfg.fuse, alpha=m.cfg.alpha,
                            beta=m.cfg.beta, weights=m.cfg.weights)
    return t.view(B, n, -1)
