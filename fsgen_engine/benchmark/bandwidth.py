"""Achieved memory bandwidth: the distance of a decoder to the physical limit.

Decoding is memory bound: every forward pass reads all weights once (shared by the batch) plus each
sequence's KV cache. The model used here:

    bytes_per_step = weight_bytes + batch * context_len * kv_bytes_per_token
    kv_bytes_per_token = 2 (K and V) * num_layers * num_kv_heads * head_dim * dtype_bytes
    achieved_bandwidth = sum over models of bytes_per_step * steps / seconds

``weight_bytes`` counts every parameter a decode step reads: all layers, the final norm and the LM
head. The input embedding is a gather of B rows, so it is left out unless it is tied to the LM head
(then the head reads the whole matrix once). The average context of a generation of ``T`` new
tokens after a prompt of ``P`` is ``P + T / 2``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch


def kv_bytes_per_token(num_layers: int, num_kv_heads: int, head_dim: int, dtype_bytes: int) -> int:
    """Bytes of K and V one token occupies in one model's cache (all layers)."""
    for name, v in (("num_layers", num_layers), ("num_kv_heads", num_kv_heads), ("head_dim", head_dim),
                    ("dtype_bytes", dtype_bytes)):
        if int(v) <= 0:
            raise ValueError(f"{name}={v} must be a positive integer")
    return 2 * num_layers * num_kv_heads * head_dim * dtype_bytes


def bytes_per_step(weight_bytes: int, kv_bytes_token: int, batch: int, context_len: float) -> float:
    """Bytes one forward pass of a batch of ``batch`` sequences reads (weights once + each KV cache)."""
    if batch <= 0:
        raise ValueError(f"batch={batch} must be positive")
    if context_len < 0:
        raise ValueError(f"context_len={context_len} must be >= 0")
    return float(weight_bytes) + float(batch) * float(context_len) * float(kv_bytes_token)


def achieved_bandwidth(passes: list[tuple[float, float]], seconds: float) -> float:
    """Bytes/s: ``passes`` is a list of (bytes_per_step, steps) per model run during ``seconds``."""
    if seconds <= 0:
        raise ValueError(f"seconds={seconds} must be positive")
    return sum(b * s for b, s in passes) / seconds


@dataclass(frozen=True)
class ModelShape:
    """What the bandwidth model needs to know about one model (or an early-exit prefix of one)."""

    num_layers: int
    num_kv_heads: int
    head_dim: int
    weight_params: int          # parameters a decode step reads (see module doc)
    dtype_bytes: int

    @property
    def weight_bytes(self) -> int:
        return self.weight_params * self.dtype_bytes

    @property
    def kv_bytes_token(self) -> int:
        return kv_bytes_per_token(self.num_layers, self.num_kv_heads, self.head_dim, self.dtype_bytes)

    def step_bytes(self, batch: int, context_len: float) -> float:
        return bytes_per_step(self.weight_bytes, self.kv_bytes_token, batch, context_len)


def shape_from_hf_config(cfg, dtype_bytes: int, num_layers: int | None = None) -> ModelShape:
    """Shape of an HF llama/qwen2-style config; ``num_layers`` < total gives an early-exit prefix."""
    h = cfg.hidden_size
    n_heads = cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", None) or n_heads
    hd = getattr(cfg, "head_dim", None) or h // n_heads
    inter = cfg.intermediate_size
    total_layers = cfg.num_hidden_layers
    layers = total_layers if num_layers is None else min(int(num_layers), total_layers)
    bias = 1 if getattr(cfg, "model_type", "") in ("qwen2",) else 0  # qwen2 has q/k/v biases
    per_layer = (h * n_heads * hd + 2 * h * kv * hd + n_heads * hd * h  # q, k, v, o
                 + bias * (n_heads * hd + 2 * kv * hd)
                 + 3 * h * inter + 2 * h)                              # gate, up, down, two norms
    head = cfg.vocab_size * h                                          # LM head (tied or not)
    return ModelShape(layers, kv, hd, layers * per_layer + h + head, dtype_bytes)


def measure_copy_bandwidth(device: torch.device | str, nbytes: int = 1 << 30, repeats: int = 5) -> float:
    """Bytes/s of a large same-device copy (read + write counted), median of ``repeats``."""
    device = torch.device(device)
    n = nbytes // 4
    src = torch.empty(n, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        times.append(time.perf_counter() - t0)
    times.sort()
    del src, dst
    return 2.0 * n * 4 / times[len(times) // 2]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
