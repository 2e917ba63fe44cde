"""Token choice after fusion, with one generate call's ``SamplingParams``.

``choose`` turns ``[B, V]`` logits into tokens (argmax when greedy, else ``ops.sample``); ``probs``
gives the filtered sampling distribution a speculative draft is drawn from (its ``q``) and ``draw``
draws from it. ``probs`` follows ``reference/sample.py``'s definition (the tests compare the two) but
runs in float32 with at most one sort of the vocabulary, for every drafted token on the hot path.
"""
from __future__ import annotations

import math

import torch

from fsgen_engine import ops
from fsgen_engine.core.sampling import SamplingParams
from fsgen_engine.ops.sample import SamplingTensors


class Sampler:
    """One generate call's token choice. ``generator`` is seeded from ``sampling.seed`` (None when
    greedy: nothing is random)."""

    def __init__(self, device, sampling: SamplingParams):
        self.device = torch.device(device)
        self.sampling = sampling
        self.greedy = sampling.greedy
        self.args = sampling.filters()
        self.generator = None
        if not self.greedy:
            self.generator = torch.Generator(device=self.device)
            if sampling.seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(int(sampling.seed))
        self._params: dict[int, SamplingTensors] = {}

    def params(self, batch: int) -> SamplingTensors:
        """The parameters as ``[batch]`` tensors for ``ops.sample`` / ``ops.verify`` (built once per size)."""
        p = self._params.get(batch)
        if p is None:
            p = self._params[batch] = SamplingTensors.prepare(batch, self.device, **self.args)
        return p

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """``[B, V]`` -> ``[B]`` int64 tokens."""
        if self.greedy:
            return torch.argmax(logits, dim=-1)
        return ops.sample(logits, params=self.params(logits.shape[0]), generator=self.generator)

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """The sampling distribution ``[B, V]`` float32 of ``logits [B, V]`` after temperature and the
        filters (``reference.sample.filtered_probs``'s definition; sampling only, not greedy).

        One descending sort serves top-k and top-p (the sorted probabilities of the top-k survivors give
        top-p's cut); without top-p, top-k is one ``topk``; min-p is a threshold on the logits
        (``p_i >= min_p * p_max`` iff ``z_i >= z_max + log(min_p)``), so no second sort or softmax."""
        if self.greedy:
            raise ValueError("Sampler.probs: greedy decoding has no sampling distribution (temperature=0)")
        a = self.args
        x = logits.float()
        x = x.masked_fill(torch.isnan(x), float("-inf"))             # NaN is never sampled
        z = x / a["temperature"]
        V = z.shape[-1]
        k = a["top_k"] if 0 < a["top_k"] < V else V
        thr = None                                                    # keep z >= thr (boundary ties kept)
        if a["top_p"] < 1.0:
            zs = torch.sort(z, dim=-1, descending=True).values
            kth = zs[:, k - 1:k]
            ps = torch.softmax(zs.masked_fill(zs < kth, float("-inf")), dim=-1)   # top-k survivors, sorted
            cut = (torch.cumsum(ps, dim=-1) < a["top_p"]).sum(dim=-1, keepdim=True).clamp(max=V - 1)
            thr = torch.maximum(kth, zs.gather(1, cut))
        elif k < V:
            thr = torch.topk(z, k, dim=-1).values[:, -1:]
        if thr is not None:
            z = z.masked_fill(z < thr, float("-inf"))
        if a["min_p"] > 0.0:
            zmax = z.max(dim=-1, keepdim=True).values
            z = z.masked_fill(z < zmax + math.log(a["min_p"]), float("-inf"))
        p = torch.softmax(z, dim=-1)
        empty = ~(x > float("-inf")).any(dim=-1, keepdim=True)
        onehot0 = torch.zeros_like(p)
        onehot0[:, 0] = 1.0
        return torch.where(empty, onehot0, p)   # no valid token: the one-hot on token 0

    def draw(self, probs: torch.Tensor) -> torch.Tensor:
        """Exact draw from ``probs [B, V]`` (exponential race; no multinomial, no sync)."""
        e = torch.empty_like(probs).exponential_(generator=self.generator)
        return torch.argmax(probs / e, dim=-1)
