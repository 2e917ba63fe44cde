"""ModelConfig: the normalized view of an HF config that our model code reads.

HF configs spell the same thing several ways across families and transformers versions (``rope_theta``
vs ``rope_parameters``, ``rotary_pct`` vs ``partial_rotary_factor``, ``layer_norm_eps`` vs
``rms_norm_eps``); ``ModelConfig.from_hf`` resolves them once so the forward code reads one field.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelConfig:
    """Geometry and numerics of one decoder-only model.

    ``family`` is ``"llama"`` (pre-norm RMSNorm, SwiGLU; Llama/Mistral/SmolLM/Qwen2/Qwen3) or
    ``"gpt_neox"`` (LayerNorm with bias, fused per-head interleaved QKV, GELU MLP, optional parallel
    residual). ``rotary_dim`` is the number of leading head dims that rotate (``head_dim`` unless partial
    rotary). ``rope_scaling`` is ``None`` or a dict with ``rope_type`` (``linear``/``llama3``/...).
    ``sliding_window`` is the window of the layers that slide (None: none do); ``layer_windows[i]`` is
    the window ``ops.paged_attention`` gets for layer ``i`` (0 = full; empty list = all full).
    """

    family: str
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    norm_eps: float
    rope_theta: float
    rotary_dim: int
    max_position_embeddings: int
    hidden_act: str = "silu"
    rope_scaling: dict | None = None
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    parallel_residual: bool = False
    bos_token_id: int | None = None
    eos_token_ids: list[int] = field(default_factory=list)
    pad_token_id: int | None = None
    # Sliding-window attention exactly where HF transformers applies it: every Mistral layer; Qwen2/Qwen3
    # layers whose layer_types entry is "sliding_attention" (use_sliding_window and index >= max_window_layers)
    sliding_window: int | None = None
    layer_windows: list[int] = field(default_factory=list)

    def attn_window(self, layer: int) -> int:
        """Sliding-window size of layer ``layer`` for ``ops.paged_attention(window=...)``; 0 = full attention."""
        return self.layer_windows[layer] if layer < len(self.layer_windows) else 0

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @classmethod
    def from_hf(cls, hf_config: Any, family: str) -> "ModelConfig":
        """Normalize a transformers ``PretrainedConfig`` of a supported ``family``."""
        c = hf_config
        get = lambda *names, default=None: _first_attr(c, names, default)  # noqa: E731
        hidden = int(c.hidden_size)
        heads = int(c.num_attention_heads)
        kv_heads = int(get("num_key_value_heads", default=heads) or heads)
        head_dim = get("head_dim", default=None) or hidden // heads
        rope_params = dict(getattr(c, "rope_parameters", None) or {})
        theta = rope_params.get("rope_theta", get("rope_theta", "rotary_emb_base", default=10000.0))
        partial = rope_params.get("partial_rotary_factor", get("partial_rotary_factor", "rotary_pct", default=1.0))
        rotary_dim = int(int(head_dim) * float(partial))
        rotary_dim -= rotary_dim % 2
        scaling = _rope_scaling(rope_params, get("rope_scaling", default=None))
        mt = str(getattr(c, "model_type", family))
        if family == "gpt_neox":
            eps = float(get("layer_norm_eps", default=1e-5))
            qkv_bias = o_bias = bool(get("attention_bias", default=True))
            mlp_bias, act = True, str(get("hidden_act", default="gelu"))
            parallel = bool(get("use_parallel_residual", default=True))
            tie = bool(get("tie_word_embeddings", default=False))
        else:
            eps = float(get("rms_norm_eps", default=1e-6))
            attn_bias = bool(get("attention_bias", default=False))
            # Qwen2/Qwen1.5 always have q/k/v biases (no config flag); Qwen3 follows attention_bias
            qkv_bias = attn_bias or mt == "qwen2"
            o_bias = attn_bias
            mlp_bias = bool(get("mlp_bias", default=False))
            act = str(get("hidden_act", "hidden_activation", default="silu"))
            parallel = False
            tie = bool(get("tie_word_embeddings", default=False))
        windows = _layer_windows(c, mt, int(c.num_hidden_layers))
        eos = get("eos_token_id", default=None)
        eos_ids = [] if eos is None else ([int(e) for e in eos] if isinstance(eos, (list, tuple)) else [int(eos)])
        return cls(family=family, model_type=mt, vocab_size=int(c.vocab_size), hidden_size=hidden,
                   intermediate_size=int(get("intermediate_size", default=4 * hidden) or 4 * hidden),
                   num_layers=int(c.num_hidden_layers), num_heads=heads, num_kv_heads=kv_heads,
                   head_dim=int(head_dim), norm_eps=eps, rope_theta=float(theta), rotary_dim=rotary_dim,
                   max_position_embeddings=int(get("max_position_embeddings", default=2048)), hidden_act=act,
                   rope_scaling=scaling, tie_word_embeddings=tie, qkv_bias=qkv_bias, o_bias=o_bias,
                   mlp_bias=mlp_bias, qk_norm=(mt == "qwen3"), parallel_residual=parallel,
                   bos_token_id=get("bos_token_id", default=None), eos_token_ids=eos_ids,
                   pad_token_id=get("pad_token_id", default=None), sliding_window=max(windows, default=0) or None,
                   layer_windows=windows)


def _layer_windows(c, model_type: str, num_layers: int) -> list[int]:
    """Per-layer windows as the installed transformers builds its attention masks.

    MistralModel masks every layer with ``config.sliding_window`` when it is set. Qwen2/Qwen3 read
    ``config.layer_types`` (their config derives it from ``use_sliding_window`` and ``max_window_layers``
    and nulls ``sliding_window`` without ``use_sliding_window``); the fallback rebuilds that rule for configs
    that lack the list. Llama and GPT-NeoX never slide, whatever the config carries.
    """
    w = getattr(c, "sliding_window", None)
    if not w:
        return []
    if model_type == "mistral":
        return [int(w)] * num_layers
    if model_type not in ("qwen2", "qwen3") or not getattr(c, "use_sliding_window", False):
        return []
    types = getattr(c, "layer_types", None)
    if not types:
        first = int(getattr(c, "max_window_layers", num_layers))
        types = ["sliding_attention" if i >= first else "full_attention" for i in range(num_layers)]
    windows = [int(w) if t == "sliding_attention" else 0 for t in list(types)[:num_layers]]
    return windows if any(windows) else []


def _first_attr(obj, names, default):
    for n in names:
        v = getattr(obj, n, None)
        if v is not None:
            return v
    return default


def _rope_scaling(rope_params: dict, legacy: dict | None) -> dict | None:
    # transformers >= 5 folds rope_scaling into rope_parameters (always present, rope_type 'default')
    src = rope_params if rope_params else (dict(legacy) if legacy else {})
    rtype = src.get("rope_type", src.get("type", "default"))
    if rtype in (None, "default"):
        return None
    out = {k: v for k, v in src.items() if k not in ("rope_theta", "partial_rotary_factor")}
    out["rope_type"] = rtype
    return out
