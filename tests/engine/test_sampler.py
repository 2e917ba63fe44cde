"""runtime.executor.Sampler.probs (speculative drafts' q) equals the reference definition."""
from __future__ import annotations

import pytest
import torch

from fsgen_engine.reference.sample import filtered_probs
from fsgen_engine.runtime.executor import Sampler


@pytest.mark.parametrize("temperature,top_k,top_p,min_p", [
    (1.0, 0, 1.0, 0.0), (0.7, 0, 1.0, 0.0), (1.3, 5, 1.0, 0.0), (1.0, 1, 1.0, 0.0), (0.9, 40, 1.0, 0.0),
    (1.0, 0, 0.8, 0.0), (1.0, 3, 0.9, 0.05)])
def test_probs_match_reference(temperature, top_k, top_p, min_p, device):
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(6, 37, generator=g) * 3).to(device)
    z[1, :30] = float("-inf")                       # fewer finite entries than top_k
    z[2] = float("-inf")                            # no valid token: one-hot on 0
    z[3, 5] = float("nan")                          # NaN is never sampled
    z[4, 7:10] = z[4].max() + 1                     # ties at the top
    s = Sampler(device, temperature, top_k, top_p, min_p, None)
    got = s.probs(z)
    p = s.params(6)
    want = filtered_probs(z, p.temperature, p.top_k, p.top_p, p.min_p).float()
    assert got.dtype == torch.float32 and got.shape == z.shape
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
