"""GPU figures for ``fsgen plan``: memory, HBM bandwidth and the inter-GPU link, from vendor datasheets.

Every figure here is an input of a paper plan, not a measurement. ``link_bw`` is the per-GPU,
per-direction bandwidth a ring all-reduce can use (NVLink 4 on H100/H200 SXM: 900 GB/s both ways =
450 GB/s each way; NVLink 3 on A100 SXM: 300 GB/s; PCIe parts: the x16 slot). ``link_latency`` is
the fixed cost of one small collective at batch 1 (NCCL small-message latency, order of 10 us); it
is an assumption, overridable on the command line, and dominates the communication of a decode step
because each message is only ``hidden_size`` activations.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

MIB = 1 << 20
# Achieved / datasheet bandwidth of a large device-to-device copy: 4.2-4.3 TB/s measured on this
# project's H200 machines (read + write counted; bench/results/h200_check1) against 4.8 TB/s.
COPY_EFFICIENCY = 0.9


@dataclass(frozen=True)
class GPU:
    """One accelerator model.

    memory_bytes: device memory as the driver reports it; hbm_bw: datasheet memory bandwidth (B/s);
    link_bw: per-direction bandwidth of the link collectives use (B/s); link: its name;
    link_latency: seconds per collective (assumption)."""

    name: str
    memory_bytes: int
    hbm_bw: float
    link_bw: float
    link: str
    link_latency: float

    @property
    def copy_bw(self) -> float:
        """Bandwidth a weight-streaming decode step can reach: datasheet x COPY_EFFICIENCY."""
        return self.hbm_bw * COPY_EFFICIENCY


GPUS: dict[str, GPU] = {g.name.lower(): g for g in (
    GPU("H100", 81559 * MIB, 3.35e12, 450e9, "NVLink 4", 10e-6),
    GPU("H100-PCIe", 81559 * MIB, 2.0e12, 64e9, "PCIe 5 x16", 20e-6),
    GPU("H200", 143771 * MIB, 4.8e12, 450e9, "NVLink 4", 10e-6),
    GPU("A100-80GB", 81920 * MIB, 2.039e12, 300e9, "NVLink 3", 10e-6),
    GPU("A100-40GB", 40960 * MIB, 1.555e12, 300e9, "NVLink 3", 10e-6),
    GPU("L40S", 46068 * MIB, 0.864e12, 32e9, "PCIe 4 x16", 20e-6),
    GPU("RTX4090", 24564 * MIB, 1.008e12, 32e9, "PCIe 4 x16", 20e-6),
)}
ALIASES = {"a100": "a100-80gb", "4090": "rtx4090", "h100-sxm": "h100", "h200-sxm": "h200"}

_SPEC = re.compile(r"^\s*(?:(\d+)\s*[x*]\s*)?([A-Za-z0-9.\-]+)\s*$")


def parse_gpus(spec: str) -> tuple[int, GPU]:
    """``"4xH100"`` -> ``(4, GPU H100)``; ``"H200"`` -> ``(1, ...)``. Clear errors on bad input."""
    m = _SPEC.match(str(spec))
    if not m:
        raise ValueError(f"--gpus {spec!r}: write COUNTxNAME, e.g. 4xH100 or 8xA100-80GB")
    count = int(m.group(1) or 1)
    if count < 1:
        raise ValueError(f"--gpus {spec!r}: the GPU count must be at least 1")
    key = m.group(2).lower()
    key = ALIASES.get(key, key)
    if key not in GPUS:
        known = ", ".join(g.name for g in GPUS.values())
        raise ValueError(f"--gpus {spec!r}: unknown GPU {m.group(2)!r}; known: {known}")
    return count, GPUS[key]


def with_overrides(gpu: GPU, *, link_bw: float | None = None, link_latency: float | None = None) -> GPU:
    """The GPU with the stated link assumptions replaced (``None`` keeps the table's figure)."""
    kw = {}
    if link_bw is not None:
        if link_bw <= 0:
            raise ValueError(f"--link-gbps {link_bw / 1e9:g} must be positive")
        kw["link_bw"] = link_bw
    if link_latency is not None:
        if link_latency < 0:
            raise ValueError(f"--allreduce-latency-us {link_latency * 1e6:g} must be >= 0")
        kw["link_latency"] = link_latency
    return replace(gpu, **kw) if kw else gpu
