"""runtime.sampler.Sampler.probs (speculative drafts' q, float32, one sort) equals the reference
definition (reference.sample.filtered_probs, float64, two sorts)."""
from __future__ import annotations

import pytest
import torch

from fsgen_engine.core import SamplingParams
from fsgen_engine.reference.sample import filtered_probs
from fsgen_engine.runtime.sampler import Sampler


def _logits(device, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 37, generator=g) * 3
    z[1, :30] = float("-inf")                       # fewer finite entries than top_k
    z[2] = float("-inf")                            # no valid token: one-hot on 0
    z[3, 5] = float("nan")                          # NaN is never sampled
    z[4, 7:10] = z[4].max() + 1                     # ties at the top
    z[5, 3:9] = z[5].min() - 1                      # ties at the bottom
    z[6] = 0.0                                      # uniform row: top-p cut among equal values
    return z.to(device=device, dtype=dtype)


CASES = [(1.0, 0, 1.0, 0.0), (0.7, 0, 1.0, 0.0), (1.3, 5, 1.0, 0.0), (1.0, 1, 1.0, 0.0), (0.9, 40, 1.0, 0.0),
         (1.0, 0, 0.8, 0.0), (1.0, 3, 0.9, 0.05), (0.6, 0, 0.5, 0.0), (1.0, 0, 1.0, 0.2), (2.0, 7, 1.0, 0.1),
         (1.0, 0, 0.3, 0.5), (1.0, 12, 0.95, 1.0)]


@pytest.mark.parametrize("temperature,top_k,top_p,min_p", CASES)
def test_probs_match_reference(temperature, top_k, top_p, min_p, device):
    z = _logits(device)
    s = Sampler(device, SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, seed=0))
    got = s.probs(z)
    p = s.params(z.shape[0])
    want = filtered_probs(z, p.temperature, p.top_k, p.top_p, p.min_p).float()
    assert got.dtype == torch.float32 and got.shape == z.shape
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    # the supports agree exactly (a filter off by one token would move mass, not just round it)
    assert torch.equal(got > 0, want > 0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_probs_low_precision_logits(dtype, device):
    z = _logits(device, dtype)
    s = Sampler(device, SamplingParams(temperature=0.8, top_k=10, top_p=0.9, min_p=0.02, seed=0))
    p = s.params(z.shape[0])
    want = filtered_probs(z, p.temperature, p.top_k, p.top_p, p.min_p).float()
    torch.testing.assert_close(s.probs(z), want, atol=1e-6, rtol=1e-5)


def test_greedy_has_no_distribution(device):
    s = Sampler(device, SamplingParams())
    assert s.greedy and s.generator is None
    with pytest.raises(ValueError, match="greedy"):
        s.probs(_logits(device))


def test_seeded_draws_repeat(device):
    z = _logits(device)
    a = Sampler(device, SamplingParams(temperature=1.0, seed=7))
    b = Sampler(device, SamplingParams(temperature=1.0, seed=7))
    q = a.probs(z)
    assert torch.equal(a.draw(q), b.draw(q))
