"""Model dimensions for ``fsgen plan``, from a known name (no weights needed) or a local config.json.

Known names are the shapes of ``fsgen_engine.benchmark.configs.SHAPES`` (the published HF config
values of Qwen1.5 0.5B-110B, Qwen2.5 0.5B-72B, Llama 3 / 3.2), matched case-insensitively.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelDims:
    """What the plan needs of a decoder-only transformer (HF config names)."""

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tied_embeddings: bool
    qkv_bias: bool

    def check(self) -> None:
        for k in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim", "intermediate_size",
                  "vocab_size"):
            v = getattr(self, k)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"model {self.name!r}: {k}={v!r} must be a positive integer")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"model {self.name!r}: num_attention_heads={self.num_heads} is not a multiple of "
                             f"num_key_value_heads={self.num_kv_heads}")


def dims_from_config(cfg: dict, name: str) -> ModelDims:
    """Dimensions from an HF config as a dict (config.json keys)."""
    missing = [k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                           "vocab_size") if k not in cfg]
    if missing:
        raise ValueError(f"model {name!r}: config has no {missing}; only decoder-only transformers with HF "
                         "llama/qwen2-style configs can be planned")
    heads = cfg["num_attention_heads"]
    model_type = cfg.get("model_type", "")
    # HF defaults: Llama/Qwen2/Mistral configs default to untied heads; the generic default is tied.
    tie_default = model_type not in ("llama", "qwen2", "mistral", "qwen3")
    d = ModelDims(
        name=name,
        hidden_size=cfg["hidden_size"],
        num_layers=cfg["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=cfg.get("num_key_value_heads") or heads,
        head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
        intermediate_size=cfg["intermediate_size"],
        vocab_size=cfg["vocab_size"],
        tied_embeddings=bool(cfg.get("tie_word_embeddings", tie_default)),
        qkv_bias=model_type == "qwen2" or bool(cfg.get("attention_bias", False)),
    )
    d.check()
    return d


def resolve_model(spec: str) -> ModelDims:
    """A known name (``qwen1.5-72b``), an HF folder, or a config.json path."""
    from fsgen_engine.benchmark.configs import SHAPES

    key = str(spec).strip().lower()
    if key in SHAPES:
        return dims_from_config(SHAPES[key], key)
    path = os.path.join(spec, "config.json") if os.path.isdir(spec) else spec
    if os.path.isfile(path) and path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            try:
                cfg = json.load(f)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: not valid JSON ({exc})") from None
        return dims_from_config(cfg, os.path.basename(os.path.dirname(os.path.abspath(path))) or spec)
    known = ", ".join(k for k in SHAPES if not k.startswith("tiny"))
    raise ValueError(f"model {spec!r} is neither a known name ({known}) nor a folder with a config.json")
