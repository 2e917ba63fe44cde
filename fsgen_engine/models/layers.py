"""Building blocks shared by the model families: norms, rotary embeddings, activations.

Plain torch, written to round exactly like HF transformers (RMSNorm in float32 then cast back, rotary
cos/sin computed in float32 and cast to the activation dtype) so fp32 logits match to ~1e-5.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fsgen_engine.models.config import ModelConfig


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """HF LlamaRMSNorm: normalize in float32, cast back to ``x.dtype``, then scale. ``x``: ``[..., D]``."""
    dtype = x.dtype
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def activation(name: str):
    """The activation function HF uses for ``hidden_act=name`` (``silu``, ``gelu``, ``gelu_new``, ...)."""
    from transformers.activations import ACT2FN

    if name not in ACT2FN:
        raise ValueError(f"hidden_act={name!r} is not supported; known: {sorted(ACT2FN)}")
    return ACT2FN[name]


def rope_inv_freq(cfg: ModelConfig) -> tuple[torch.Tensor, float]:
    """Inverse frequencies ``[rotary_dim // 2]`` (float32) and the cos/sin scale for ``cfg``'s rope type.

    Supported: default, ``linear``, ``llama3``, ``dynamic`` (static within ``max_position_embeddings``:
    HF only rescales past the original context, which needs the batch's length on the host), and
    ``yarn``. Anything else is a clear error.
    """
    dim = cfg.rotary_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    sc = cfg.rope_scaling
    if not sc:
        return inv, 1.0
    rtype = sc["rope_type"]
    if rtype == "linear":
        return inv / float(sc["factor"]), 1.0
    if rtype == "dynamic":
        return inv, 1.0
    if rtype == "llama3":
        factor = float(sc["factor"])
        low, high = float(sc["low_freq_factor"]), float(sc["high_freq_factor"])
        old_ctx = float(sc["original_max_position_embeddings"])
        low_wl, high_wl = old_ctx / low, old_ctx / high
        wavelen = 2 * math.pi / inv
        out = torch.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old_ctx / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * out / factor + smooth * out
        medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
        return torch.where(medium, smoothed, out), 1.0
    if rtype == "yarn":
        return _yarn(inv, cfg, sc)
    raise ValueError(f"rope_scaling type {rtype!r} is not supported; supported: linear, llama3, dynamic, yarn")


def _yarn(inv: torch.Tensor, cfg: ModelConfig, sc: dict) -> tuple[torch.Tensor, float]:
    # transformers' _compute_yarn_parameters, without the truncate=False / mscale_all_dim variants
    dim, base, factor = cfg.rotary_dim, cfg.rope_theta, float(sc["factor"])
    orig = float(sc.get("original_max_position_embeddings") or cfg.max_position_embeddings / factor)
    beta_fast, beta_slow = float(sc.get("beta_fast") or 32), float(sc.get("beta_slow") or 1)
    att = sc.get("attention_factor")
    if att is None:
        att = 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0

    def corr(n_rot):
        return (dim * math.log(orig / (n_rot * 2 * math.pi))) / (2 * math.log(base))

    lo, hi = max(math.floor(corr(beta_fast)), 0), min(math.ceil(corr(beta_slow)), dim - 1)
    if lo == hi:
        hi += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - lo) / (hi - lo)).clamp(0, 1)
    extrap = 1 - ramp
    return (inv / factor) * (1 - extrap) + inv * extrap, float(att)


class Rotary:
    """cos/sin tables ``[L, rotary_dim]`` (HF's duplicated-halves layout) in the model dtype.

    The table grows on the host when a batch's ``max_seq_len`` outgrows it (a host int of the batch, so
    no device sync); views of one model (early exit) share it.
    """

    def __init__(self, cfg: ModelConfig, dtype: torch.dtype, device: torch.device, initial: int = 4096):
        self.rotary_dim = cfg.rotary_dim
        inv, self.scale = rope_inv_freq(cfg)
        self.inv_freq = inv.to(device)
        self.dtype, self.device = dtype, device
        self.cos = self.sin = None
        self._build(min(initial, max(cfg.max_position_embeddings, 1)))

    def _build(self, length: int) -> None:
        pos = torch.arange(length, device=self.device, dtype=torch.int64).float()
        freqs = pos[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos = (emb.cos() * self.scale).to(self.dtype)
        self.sin = (emb.sin() * self.scale).to(self.dtype)

    def tables(self, positions: torch.Tensor, max_seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin ``[N, 1, rotary_dim]`` for ``positions`` ``[N]`` (all ``< max_seq_len``)."""
        if max_seq_len > self.cos.shape[0]:
            self._build(1 << (int(max_seq_len) - 1).bit_length())
        return self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the leading ``cos.shape[-1]`` dims of ``x`` ``[N, H, D]``; returns a contiguous tensor."""
    rd = cos.shape[-1]
    if rd == x.shape[-1]:
        return (x * cos) + (_rotate_half(x) * sin)
    rot, rest = x[..., :rd], x[..., rd:]
    return torch.cat(((rot * cos) + (_rotate_half(rot) * sin), rest), dim=-1)
