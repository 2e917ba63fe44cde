"""Every FSGEN_* setting in one place.

Environment variables (read when the value is needed, so tests may set them at run time):

=====================  =========================================================================
FSGEN_BACKEND          force one kernel backend for every op: auto | cuda | triton | cpu | reference
FSGEN_KV_MEMORY        KV-pool byte budget, e.g. ``2GiB``, ``512MB``, ``0.3`` (fraction of free
                       device memory on GPU); default ``1GiB`` on CPU, ``0.5`` on GPU
FSGEN_PAGE_SIZE        tokens per KV page when ``Engine(page_size=None)`` (default 16)
FSGEN_CUDA_GRAPHS      1/0: capture CUDA graphs for decode and verify steps (default 1 on GPU)
FSGEN_TP_LOGITS        tensor parallel, greedy large side: auto | merge | gather (default auto:
                       merge the ranks' (max, id) pairs when a step's logits exceed 4 MiB)
FSGEN_TP_BACKEND       tensor parallel: gloo | nccl (default nccl on CUDA, gloo on CPU)
FSGEN_TP_TIMEOUT       tensor parallel: collective timeout in seconds (default 120)
FSGEN_SPLIT_ROWS       CUDA token_stats / fuse_logits / sample / verify: auto | off | N (default auto:
                       split each row over many blocks when the batch is small; off: one block
                       per row; N: N column splits per row, for benchmarks and tests; split
                       sample/verify keep an 8 KiB histogram per row and position)
FSGEN_BUILD_CUDA       build time only (setup.py): auto | 0 | 1
=====================  =========================================================================
"""
from __future__ import annotations

import os
import re

BACKENDS = ("auto", "cuda", "triton", "cpu", "reference")

_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def env_backend() -> str:
    value = os.environ.get("FSGEN_BACKEND", "auto").strip().lower() or "auto"
    if value not in BACKENDS:
        raise ValueError(f"FSGEN_BACKEND={value!r} is not a backend: use one of {', '.join(BACKENDS)}")
    return value


def parse_memory(value: str | int | float, *, name: str = "kv_memory") -> int | float:
    """Parse a byte budget: an int (bytes), ``"2GiB"``/``"512MB"``, or a fraction in (0, 1].

    Returns an ``int`` number of bytes, or a ``float`` fraction of free device memory.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not a memory size: give bytes, '2GiB', or a fraction like 0.5")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"{name}={value} must be a positive number of bytes")
        return value
    if isinstance(value, float):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"{name}={value} as a float is a fraction of free device memory and must be in (0, 1]")
        return value
    text = str(value).strip().lower().replace(" ", "")
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)([a-z]*)", text)
    if not m or m.group(2) not in _SIZE_UNITS:
        raise ValueError(f"{name}={value!r} is not a memory size: use bytes, e.g. '2GiB', '512MB', or a fraction like 0.5")
    number, unit = float(m.group(1)), m.group(2)
    if unit == "" and number <= 1.0 and "." in m.group(1):
        return parse_memory(number, name=name)
    size = int(number * _SIZE_UNITS[unit])
    if size <= 0:
        raise ValueError(f"{name}={value!r} must be positive")
    return size


def env_kv_memory(device_type: str) -> int | float:
    default = "1GiB" if device_type == "cpu" else "0.5"
    return parse_memory(os.environ.get("FSGEN_KV_MEMORY", default), name="FSGEN_KV_MEMORY")


def env_page_size() -> int:
    raw = os.environ.get("FSGEN_PAGE_SIZE", "16")
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"FSGEN_PAGE_SIZE={raw!r} must be a positive integer (tokens per KV page), e.g. 16") from None
    if value <= 0:
        raise ValueError(f"FSGEN_PAGE_SIZE={value} must be a positive integer (tokens per KV page), e.g. 16")
    return value


def env_cuda_graphs() -> bool:
    return os.environ.get("FSGEN_CUDA_GRAPHS", "1").strip() not in ("0", "false", "no", "off")


TP_LOGITS_MODES = ("auto", "merge", "gather")
# auto: gather below this many bytes of logits per step, merge above. Measured on CPU/gloo with 2 ranks
# (bench/results/tp_cpu_smollm2*.md, vocab_parallel_comm_cpu.md): end to end, gathering up to ~1 MB per
# step was as fast or faster (the merge's extra small ops and the all-gather's fixed latency dominate);
# the merge was 2.0-7.9x faster in isolation from 2.4 MB up.
TP_MERGE_MIN_BYTES = 4 << 20


def env_tp_logits() -> str:
    value = os.environ.get("FSGEN_TP_LOGITS", "auto").strip().lower() or "auto"
    if value not in TP_LOGITS_MODES:
        raise ValueError(f"FSGEN_TP_LOGITS={value!r}: use one of {', '.join(TP_LOGITS_MODES)}")
    return value


def env_split_rows() -> int | None:
    """``FSGEN_SPLIT_ROWS``: None for auto, 1 for off, else the forced number of splits per row."""
    raw = os.environ.get("FSGEN_SPLIT_ROWS", "auto").strip().lower() or "auto"
    if raw == "auto":
        return None
    if raw == "off":
        return 1
    if raw.isdigit() and int(raw) >= 1:
        return int(raw)
    raise ValueError(f"FSGEN_SPLIT_ROWS={raw!r}: use auto, off or a positive number of column splits per row, e.g. 8")
