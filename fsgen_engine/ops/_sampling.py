"""What ops.sample and ops.verify share: validated per-row sampling parameters, the seed draw and
the logits checks."""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

from fsgen_engine.core.sampling import RANGES, check_value, check_values
from fsgen_engine.ops._validate import FLOAT_DTYPES, check_last_dim_contiguous, check_tensor, per_row


@dataclass(frozen=True)
class SamplingTensors:
    """Validated per-row sampling parameters, each ``[B]`` on one device: float32 temperature,
    int64 top_k, float32 top_p, float32 min_p. ``all_greedy``: known on the host that every row has
    temperature 0 (a scalar 0 was given), so kernels may skip everything but the argmax."""

    temperature: torch.Tensor
    top_k: torch.Tensor
    top_p: torch.Tensor
    min_p: torch.Tensor
    all_greedy: bool = False

    @classmethod
    def prepare(cls, batch: int, device: torch.device | str, *, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                op: str = "sample") -> "SamplingTensors":
        """Validate scalars / ``[B]`` tensors (one host sync for tensors) and expand to ``[B]``."""
        device = torch.device(device)
        return cls(temperature=_param(op, "temperature", temperature, batch, device),
                   top_k=_param(op, "top_k", top_k, batch, device),
                   top_p=_param(op, "top_p", top_p, batch, device),
                   min_p=_param(op, "min_p", min_p, batch, device),
                   all_greedy=isinstance(temperature, numbers.Number) and not isinstance(temperature, bool)
                   and temperature == 0)

    @classmethod
    def resolve(cls, op: str, params: "SamplingTensors | None", batch: int, device: torch.device,
                **scalars) -> "SamplingTensors":
        """``params`` checked against the batch (hot path, no sync), or built from the scalar arguments."""
        if params is None:
            return cls.prepare(batch, device, op=op, **scalars)
        params.check(op, batch, device)
        return params

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
    if generator is not None and (generator.device.type != device.type or
                                  (device.type == "cuda" and generator.device.index != device.index)):
        raise ValueError(f"generator is on {generator.device} but the logits are on {device}; "
                         f"create it with torch.Generator(device='{device}')")
    return torch.randint(0, 2**62, (1,), generator=generator, device=device, dtype=torch.int64)


def check_logits(op: str, name: str, logits, ndim: int) -> None:
    check_tensor(op, name, logits, ndim=ndim, dtypes=FLOAT_DTYPES)
    if logits.shape[-1] == 0:
        raise ValueError(f"{op}: {name} has an empty vocabulary dimension (shape {tuple(logits.shape)})")
    check_last_dim_contiguous(op, name, logits)
