"""Tiny random HF models of every supported family (head_dim 64: ops.paged_attention's smallest)."""
from __future__ import annotations

import pytest
import torch

VOCAB = 211


def _common(layers=3):
    return dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=128,
                bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)


def make_hf(kind: str, layers: int = 3, seed: int = 0):
    """An fp32 HF causal LM of family ``kind`` with random weights (norms and biases perturbed too)."""
    import transformers as T

    kw = _common(layers)
    if kind == "llama":
        cls, cfg = T.LlamaForCausalLM, T.LlamaConfig(**kw)
    elif kind == "llama3_tied":
        kw.update(tie_word_embeddings=True, rope_theta=500000.0,
                  rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                    original_max_position_embeddings=32))
        cls, cfg = T.LlamaForCausalLM, T.LlamaConfig(**kw)
    elif kind == "mistral":
        cls, cfg = T.MistralForCausalLM, T.MistralConfig(**kw)
    elif kind == "qwen2":
        cls, cfg = T.Qwen2ForCausalLM, T.Qwen2Config(**kw)
    elif kind == "qwen3":
        cls, cfg = T.Qwen3ForCausalLM, T.Qwen3Config(**kw)
    # Sliding-window variants: every Mistral layer slides; Qwen layers from max_window_layers on do
    elif kind == "mistral_swa":
        cls, cfg = T.MistralForCausalLM, T.MistralConfig(**kw, sliding_window=5)
    elif kind == "qwen2_swa":
        cfg = T.Qwen2Config(**kw, use_sliding_window=True, sliding_window=4, max_window_layers=1)
        cls = T.Qwen2ForCausalLM
    elif kind == "qwen3_swa":
        cfg = T.Qwen3Config(**kw, use_sliding_window=True, sliding_window=6, max_window_layers=2)
        cls = T.Qwen3ForCausalLM
    elif kind in ("neox", "neox_serial"):
        cfg = T.GPTNeoXConfig(vocab_size=VOCAB, hidden_size=256, intermediate_size=256, num_hidden_layers=layers,
                              num_attention_heads=4, rotary_pct=0.25, max_position_embeddings=128,
                              use_parallel_residual=(kind == "neox"), bos_token_id=1, eos_token_id=2,
                              tie_word_embeddings=False)
        cls = T.GPTNeoXForCausalLM
    else:
        raise ValueError(kind)
    torch.manual_seed(seed)
    m = cls(cfg).float().eval()
    with torch.no_grad():  # HF inits norms to 1 and biases to 0: perturb so every weight matters
        for name, p in m.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return m


FAMILIES = ["llama", "llama3_tied", "mistral", "qwen2", "qwen3", "neox", "neox_serial"]


@pytest.fixture(scope="module", params=FAMILIES)
def saved(request, tmp_path_factory):
    """(kind, HF model, folder it was saved to)."""
    m = make_hf(request.param)
    d = tmp_path_factory.mktemp(request.param)
    m.save_pretrained(d, safe_serialization=True)
    return request.param, m, str(d)
