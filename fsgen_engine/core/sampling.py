"""Sampling parameters and the one place their values are checked.

``SamplingParams`` is what ``Engine.generate`` takes; ``ops.sample`` / ``ops.verify`` take the same
four parameters as Python scalars or per-row ``[B]`` tensors (``ops.sample.SamplingTensors``). All of
them are checked against ``RANGES`` by :func:`check_value` (a scalar) or :func:`check_values` (a
tensor), so a value accepted in one place is accepted everywhere and every error reads the same:
it names the parameter, the value, the allowed range and how to turn the filter off.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Range:
    """Allowed values of one sampling parameter: ``lo`` .. ``hi`` (None = unbounded), ``lo`` excluded
    when ``lo_open``; ``integer`` parameters take integral values only."""

    lo: float
    hi: float | None
    lo_open: bool = False
    integer: bool = False
    hint: str = ""

    def text(self) -> str:
        return f"{'(' if self.lo_open else '['}{self.lo}, {'inf' if self.hi is None else self.hi}]"

    def violated(self, x: float) -> bool:
        return (x <= self.lo if self.lo_open else x < self.lo) or (self.hi is not None and x > self.hi)


RANGES: dict[str, Range] = {
    "temperature": Range(0.0, None, hint="use 0 for greedy or a positive temperature"),
    "top_k": Range(0, None, integer=True, hint="use 0 to disable top-k"),
    "top_p": Range(0.0, 1.0, lo_open=True, hint="use 1.0 to disable top-p"),
    "min_p": Range(0.0, 1.0, hint="use 0.0 to disable min-p"),
}


def _prefix(op: str) -> str:
    return f"{op}: " if op else ""


def check_value(name: str, value, *, op: str = "") -> float | int:
    """Check a Python scalar for sampling parameter ``name`` (a key of ``RANGES``); return it as
    ``int`` (top_k) or ``float``. ``op`` prefixes the error (``"sample: top_p=0 must be ..."``)."""
    r = RANGES[name]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{_prefix(op)}{name}={value!r} must be a number in {r.text()}; {r.hint}")
    x = float(value)
    if not math.isfinite(x) or (r.integer and not x.is_integer()) or r.violated(x):
        kind = "an integer in " if r.integer else "in "
        raise ValueError(f"{_prefix(op)}{name}={value} must be {kind}{r.text()}; {r.hint}")
    return int(x) if r.integer else x


def check_values(name: str, t: torch.Tensor, *, op: str = "") -> None:
    """Check every entry of a tensor of sampling parameter ``name`` (one host sync)."""
    r = RANGES[name]
    bad = torch.zeros(t.shape, dtype=torch.bool, device=t.device)
    if t.is_floating_point():
        bad |= ~torch.isfinite(t)
        if r.integer:
            bad |= t != t.round()
    bad |= (t <= r.lo) if r.lo_open else (t < r.lo)
    if r.hi is not None:
        bad |= t > r.hi
    if bool(bad.any()):
        first = t[bad][0].item()
        kind = "an integer in " if r.integer else ""
        raise ValueError(f"{_prefix(op)}{name}={first} is out of range: must be {kind}{r.text()}; {r.hint}")


@dataclass(frozen=True)
class SamplingParams:
    """How tokens are chosen after fusion (every method, every model call that picks a token).

    temperature: >= 0, 0 = greedy (argmax; the filters are then unused). top_k: >= 0 integer, 0 = off.
    top_p: in (0, 1], 1 = off. min_p: in [0, 1], 0 = off. seed: an int for reproducible sampling, or
    None (fresh randomness). The filters' definition is ``reference/sample.py``'s module doc.
    Values are checked when the object is built (``ValueError`` naming the parameter).
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    seed: int | None = None

    def __post_init__(self):
        for name in RANGES:
            object.__setattr__(self, name, check_value(name, getattr(self, name)))
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral)):
            raise ValueError(f"seed={self.seed!r} must be an integer or None")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def filters(self) -> dict:
        """``temperature``, ``top_k``, ``top_p``, ``min_p`` as keyword arguments of the ops."""
        return dict(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, min_p=self.min_p)
