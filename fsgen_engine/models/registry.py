"""Registry: which model class runs a given HF config (by ``architectures``, then ``model_type``)."""
from __future__ import annotations

from fsgen_engine.models.config import ModelConfig
from fsgen_engine.models.gpt_neox import GPTNeoXModel
from fsgen_engine.models.llama import LlamaModel

# model_type -> (family, class)
MODEL_TYPES = {
    "llama": ("llama", LlamaModel),
    "mistral": ("llama", LlamaModel),
    "qwen2": ("llama", LlamaModel),
    "qwen3": ("llama", LlamaModel),
    "gpt_neox": ("gpt_neox", GPTNeoXModel),
}
ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "GPTNeoXForCausalLM": "gpt_neox",
}


def supported() -> str:
    return (f"architectures {', '.join(sorted(ARCHITECTURES))} (model_type {', '.join(sorted(MODEL_TYPES))})")


def resolve(hf_config, origin: str = "model"):
    """``(model class, ModelConfig)`` for an HF config; ValueError listing the supported ones otherwise."""
    mt = None
    for arch in getattr(hf_config, "architectures", None) or []:
        if arch in ARCHITECTURES:
            mt = ARCHITECTURES[arch]
            break
    if mt is None:
        mt = getattr(hf_config, "model_type", None)
    if mt not in MODEL_TYPES:
        archs = getattr(hf_config, "architectures", None)
        raise ValueError(f"{origin}: unsupported model (architectures={archs}, model_type="
                         f"{getattr(hf_config, 'model_type', None)!r}); supported: {supported()}")
    family, cls = MODEL_TYPES[mt]
    cfg = ModelConfig.from_hf(hf_config, family)
    cfg.model_type = mt
    cfg.qk_norm = mt == "qwen3"
    return cls, cfg
