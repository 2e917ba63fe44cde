"""Reference (plain torch) for ops.sample: the definition the kernels are tested against.

Definition, per row b (all arithmetic in float64):

1. ``x = logits[b]`` with NaN replaced by ``-inf``: NaN entries are never sampled.
2. A row whose entries are all ``-inf``/NaN has no valid token: its result is token ``0``
   (its "distribution" is the one-hot on token 0).
3. ``temperature[b] == 0``: greedy, the argmax of ``x`` (ties -> lowest index); filters ignored.
   A row with a ``+inf`` entry is treated the same way for every temperature and filter: a ``+inf``
   logit is infinitely more likely than any finite one, so it is the only candidate, and the first
   ``+inf`` (lowest index) wins when there are several (the limit of softmax would split the mass
   among them; one token keeps every backend deterministic and equal).
4. Otherwise ``z = x / temperature[b]`` and the filters run in this order:
   - top-k (``top_k > 0``): keep ``z >= v_k``, ``v_k`` the k-th largest value of the row.
     Ties at the boundary are all kept, so more than k tokens survive when values tie.
   - top-p (``top_p < 1``): on the softmax of the top-k survivors, sorted by probability,
     ``tau`` is the probability of the first token whose cumulative sum reaches ``top_p``; keep
     ``p >= tau`` (the smallest such head, plus boundary ties; at least one token).
   - min-p (``min_p > 0``): keep ``p >= min_p * max(p)`` (scale-free, so renormalisation between
     filters does not matter).
   ``-inf`` entries are never kept. The result is the softmax of ``z`` over the kept set.
5. The token is drawn by the exponential race: ``argmax_i p_i / E_i`` with ``E_i ~ Exp(1)``
   (equivalently the Gumbel-max trick), never ``torch.multinomial``.
"""
from __future__ import annotations

import torch


def clean_logits(logits: torch.Tensor) -> torch.Tensor:
    """``[..., V]`` -> float64 copy with NaN replaced by ``-inf``."""
    x = logits.to(torch.float64)
    return torch.where(torch.isnan(x), torch.full_like(x, float("-inf")), x)


def filtered_probs(logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor,
                   min_p: torch.Tensor) -> torch.Tensor:
    """Sampling distribution of every row after temperature and filters (see module doc).

    logits ``[N, V]`` (any float dtype); the parameters are ``[N]`` tensors (float temperature,
    top_p, min_p; integer top_k). Returns float64 ``[N, V]`` probabilities; greedy rows and rows
    without a valid token are one-hot.
    """
    x = clean_logits(logits)
    n, v = x.shape
    dev = x.device
    temperature = temperature.to(dev, torch.float64)
    top_k = top_k.to(dev, torch.int64)
    top_p = top_p.to(dev, torch.float64)
    min_p = min_p.to(dev, torch.float64)
    neg_inf = torch.tensor(float("-inf"), dtype=torch.float64, device=dev)

    greedy = temperature == 0
    safe_t = torch.where(greedy, torch.ones_like(temperature), temperature)
    z = x / safe_t[:, None]
    finite = z > float("-inf")
    keep = finite.clone()

    # top-k: threshold at the k-th largest value; boundary ties kept.
    zs = torch.sort(z, dim=-1, descending=True).values
    k_eff = torch.where(top_k > 0, top_k.clamp(max=v), torch.full_like(top_k, v))
    kth = zs.gather(1, (k_eff - 1)[:, None])
    keep &= z >= kth

    # top-p on the renormalised top-k survivors.
    p = torch.softmax(torch.where(keep, z, neg_inf), dim=-1)
    ps = torch.sort(p, dim=-1, descending=True).values
    cum = torch.cumsum(ps, dim=-1)
    cut = (cum < top_p[:, None]).sum(dim=-1).clamp(max=v - 1)
    tau = ps.gather(1, cut[:, None])
    keep &= torch.where((top_p < 1)[:, None], p >= tau, torch.ones_like(keep))

    # min-p relative to the most likely survivor.
    p = torch.softmax(torch.where(keep, z, neg_inf), dim=-1)
    pmax = p.max(dim=-1, keepdim=True).values
    keep &= p >= min_p[:, None] * pmax

    probs = torch.softmax(torch.where(keep, z, neg_inf), dim=-1)
    onehot_arg = torch.nn.functional.one_hot(torch.argmax(x, dim=-1), v).to(torch.float64)
    empty = ~finite.any(dim=-1)
    onehot0 = torch.zeros_like(probs)
    onehot0[:, 0] = 1.0
    has_pos_inf = (x == float("inf")).any(dim=-1)  # argmax(x) is then the first +inf
    probs = torch.where((greedy | has_pos_inf)[:, None], onehot_arg, probs)
    probs = torch.where(empty[:, None], onehot0, probs)
    return probs


def race(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Exponential race over each row of ``probs`` ``[N, V]``: ``argmax p_i / E_i``. Rows with a
    single non-zero entry return it deterministically."""
    u = torch.rand(probs.shape, generator=generator, device=probs.device, dtype=torch.float64)
    e = -torch.log(u.clamp_min(1e-300))
    return torch.argmax(probs / e, dim=-1)


def sample_reference(logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor,
                     min_p: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """logits ``[B, V]`` -> tokens ``[B]`` int64 (parameters as ``[B]`` tensors)."""
    return race(filtered_probs(logits, temperature, top_k, top_p, min_p), generator)
