"""Reference (plain torch) for ops.verify: speculative-decoding verification.

Per row b with ``n = num_draft[b]`` drafts, ``p_i`` the target distribution at position i (the
``ops.sample`` definition: temperature, top-k, top-p, min-p; one-hot on the argmax when
``temperature[b] == 0``) and ``q_i`` the draft distribution (``draft_probs[b, i]``; one-hot on the
draft token when ``draft_probs`` is None, i.e. a deterministic draft):

- for i < n: accept ``x_i = draft_tokens[b, i]`` with probability ``min(1, p_i(x_i) / q_i(x_i))``
  (``u * q < p`` with ``u ~ U(0,1)``); at the first rejection emit a sample of
  ``normalize(max(0, p_i - q_i))`` (of ``p_i`` when that is all zero) and stop;
- when all n are accepted emit the bonus token, a sample of ``p_n``.

Returns ``num_accepted`` (the i of the first rejection, or n) and that emitted ``next_token``.
With temperature 0 this is exactly greedy verification: accept while ``argmax p_i == x_i``;
next token = the target argmax at the first disagreement (or at position n).
"""
from __future__ import annotations

import torch

from fsgen_engine.reference.sample import filtered_probs, race


def verify_reference(draft_tokens: torch.Tensor, target_logits: torch.Tensor, draft_probs: torch.Tensor | None,
                     num_draft: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor,
                     min_p: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """draft_tokens ``[B, K]`` int64, target_logits ``[B, K+1, V]``, draft_probs ``[B, K, V]`` or None,
    num_draft ``[B]`` int64, per-row parameters ``[B]`` -> (num_accepted ``[B]``, next_token ``[B]``)."""
    b, k1, v = target_logits.shape
    k = k1 - 1
    dev = target_logits.device
    rep = lambda t: t.repeat_interleave(k1)  # noqa: E731
    p = filtered_probs(target_logits.reshape(b * k1, v), rep(temperature), rep(top_k), rep(top_p),
                       rep(min_p)).reshape(b, k1, v)
    draft = draft_tokens.to(dev, torch.int64)
    if draft_probs is None:
        q = torch.nn.functional.one_hot(draft, v).to(torch.float64)
    else:
        q = draft_probs.to(torch.float64)
    num_draft = num_draft.to(dev, torch.int64)

    # All random numbers are drawn up front from the generator (fixed order -> deterministic).
    u = torch.rand((b, max(k, 1)), generator=generator, device=dev, dtype=torch.float64)[:, :k]
    p_x = p[:, :k].gather(2, draft[:, :, None])[:, :, 0]
    q_x = q.gather(2, draft[:, :, None])[:, :, 0]
    accept = u * q_x < p_x
    pos = torch.arange(k, device=dev)
    accept |= pos[None, :] >= num_draft[:, None]  # positions past the ragged end never reject
    rejected = ~accept
    if k > 0:
        first_rej = torch.where(rejected.any(dim=1), rejected.int().argmax(dim=1), torch.full_like(num_draft, k))
    else:
        first_rej = torch.zeros_like(num_draft)
    num_accepted = torch.minimum(first_rej, num_draft)
    all_acc = num_accepted >= num_draft

    rows = torch.arange(b, device=dev)
    pos_emit = num_accepted.clamp(max=k)
    p_at = p[rows, pos_emit]
    q_at = q[rows, num_accepted.clamp(max=max(k - 1, 0))] if k > 0 else torch.zeros_like(p_at)
    resid = (p_at - q_at).clamp_min(0)
    resid = torch.where((resid.sum(dim=-1, keepdim=True) > 0), resid, p_at)
    dist = torch.where(all_acc[:, None], p_at, resid)
    next_token = race(dist, generator)
    return num_accepted, next_token
