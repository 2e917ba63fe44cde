"""ops.sample: draw one token per row from temperature/top-k/top-p/min-p filtered logits.

Semantics (defined by ``fsgen_engine.reference.sample``): NaN logits are never sampled; a row with
no finite logit returns token 0; temperature 0 is the argmax (ties -> lowest index), per row; a row
with a ``+inf`` logit returns its first ``+inf`` whatever the temperature and filters (a ``+inf`` is
the only candidate); the filters apply after temperature in the order top-k, top-p, min-p and keep
ties at their boundary.
Tokens are drawn by the exponential race (no ``torch.multinomial``, no host sync): kernels derive
their noise from one int64 seed drawn with ``torch.randint(generator=...)`` on the logits' device,
so results are deterministic for a given generator state (per backend; backends use different
noise streams).

Hot path: build a :class:`SamplingTensors` once per generate call (validates, one host sync) and
pass it as ``params=``; ``sample`` then does no value checks and never syncs.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

from fsgen_engine.core.sampling import RANGES, check_value, check_values
from fsgen_engine.ops._dispatch import choose_backend
from fsgen_engine.ops._native import call_native, dtype_code
from fsgen_engine.ops._validate import FLOAT_DTYPES, check_last_dim_contiguous, check_tensor, per_row


@dataclass(frozen=True)
class SamplingTensors:
    """Validated per-row sampling parameters, each ``[B]`` on one device: float32 temperature,
    int64 top_k, float32 top_p, float32 min_p."""

    temperature: torch.Tensor
    top_k: torch.Tensor
    top_p: torch.Tensor
    min_p: torch.Tensor

    @classmethod
    def prepare(cls, batch: int, device: torch.device | str, *, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                op: str = "sample") -> "SamplingTensors":
        """Validate scalars / ``[B]`` tensors (one host sync for tensors) and expand to ``[B]``."""
        device = torch.device(device)
        return cls(temperature=_param(op, "temperature", temperature, batch, device),
                   top_k=_param(op, "top_k", top_k, batch, device),
                   top_p=_param(op, "top_p", top_p, batch, device),
                   min_p=_param(op, "min_p", min_p, batch, device))

    def check(self, op: str, batch: int, device: torch.device) -> None:
        """Cheap (no sync) shape/device check used on the hot path."""
        for name in ("temperature", "top_k", "top_p", "min_p"):
            t = getattr(self, name)
            if t.shape != (batch,) or t.device != device:
                raise ValueError(f"{op}: params.{name} has shape {tuple(t.shape)} on {t.device} but the batch is "
                                 f"[{batch}] on {device}; rebuild it with SamplingTensors.prepare({batch}, '{device}')")


def _param(op, name, value, batch, device):
    """A validated ``[B]`` tensor (int64 top_k, else float32); the ranges are ``core.sampling.RANGES``."""
    dtype = torch.int64 if RANGES[name].integer else torch.float32
    if isinstance(value, numbers.Number) and not isinstance(value, (bool, torch.Tensor)):
        # Python scalar: check on the host, no device sync.
        return torch.full((batch,), check_value(name, value, op=op), dtype=dtype, device=device)
    t = per_row(op, name, value, batch, device)
    check_values(name, t, op=op)
    return t.to(dtype).contiguous()


def draw_seed(generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """One int64 seed on ``device`` (a tiny device op, no host sync)."""
    if generator is not None and generator.device.type != device.type:
        raise ValueError(f"generator is on {generator.device} but the logits are on {device}; "
                         f"create it with torch.Generator(device='{device}')")
    return torch.randint(0, 2**62, (1,), generator=generator, device=device, dtype=torch.int64)


def check_logits(op: str, name: str, logits, ndim: int) -> None:
    check_tensor(op, name, logits, ndim=ndim, dtypes=FLOAT_DTYPES)
    if logits.shape[-1] == 0:
        raise ValueError(f"{op}: {name} has an empty vocabulary dimension (shape {tuple(logits.shape)})")
    check_last_dim_contiguous(op, name, logits)


def sample(logits: torch.Tensor, *, temperature=1.0, top_k=0, top_p: float | torch.Tensor = 1.0,
           min_p: float | torch.Tensor = 0.0, generator: torch.Generator | None = None, backend: str = "auto",
           params: SamplingTensors | None = None) -> torch.Tensor:
    """Sample one token per row.

    logits: ``[B, V]`` float32/float16/bfloat16, stride 1 along V (rows may be strided).
    temperature (>= 0, 0 = greedy), top_k (>= 0, 0 = off), top_p (in (0, 1], 1 = off),
    min_p (in [0, 1], 0 = off): Python scalars or ``[B]`` tensors.
    params: a :class:`SamplingTensors` (hot path; the scalar arguments are then ignored).
    Returns ``[B]`` int64 tokens on the logits' device.
    """
    check_logits("sample", "logits", logits, 2)
    batch, vocab = logits.shape
    device = logits.device
    if params is None:
        params = SamplingTensors.prepare(batch, device, temperature=temperature, top_k=top_k, top_p=top_p,
                                         min_p=min_p, op="sample")
    else:
        params.check("sample", batch, device)
    which = choose_backend("sample", device, backend, native="sample")
    if batch == 0:
        return torch.empty(0, dtype=torch.int64, device=device)
    if which == "reference":
        from fsgen_engine.reference.sample import sample_reference

        return sample_reference(logits, params.temperature, params.top_k, params.top_p, params.min_p, generator)
    seed = draw_seed(generator, device)
    out = torch.empty(batch, dtype=torch.int64, device=device)
    if which == "triton":
        from fsgen_engine.kernels.sample_split import sample_any_triton

        sample_any_triton(logits, params.temperature, params.top_k, params.top_p, params.min_p, seed, out)
        return out
    call_native("sample", which, device, logits=logits.data_ptr(), batch=batch, vocab=vocab,
                row_stride=logits.stride(0), dtype=dtype_code(logits), temperature=params.temperature.data_ptr(),
                top_k=params.top_k.data_ptr(), top_p=params.top_p.data_ptr(), min_p=params.min_p.data_ptr(),
                seed=seed.data_ptr(), out=out.data_ptr())
    return out
