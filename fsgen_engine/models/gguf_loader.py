"""Loading a GGUF file: config from its metadata (transformers' GGUF parser), tensors dequantised with
the ``gguf`` package and renamed to HF parameter names.

llama.cpp's converter permutes the q/k projection rows of llama-architecture models (GGML's rotary
pairs adjacent dims, HF's rotates halves); the permutation is inverted exactly as transformers'
``LlamaTensorProcessor._reverse_permute_weights`` does. Other architectures (qwen2, qwen3) are stored
unpermuted.
"""
from __future__ import annotations

import os
import re

import numpy as np
import torch

from fsgen_engine.models.base import CausalLM, WeightSource
from fsgen_engine.models.registry import resolve

GGUF_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3")

_GLOBAL = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLOCK = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")


def hf_name(gguf_name: str) -> str | None:
    """The HF parameter name of a GGUF tensor of a llama-like model (None for unused tensors, e.g. rope_freqs)."""
    if gguf_name in _GLOBAL:
        return _GLOBAL[gguf_name]
    m = _BLOCK.match(gguf_name)
    if m and m.group(2) in _LAYER:
        return f"model.layers.{m.group(1)}.{_LAYER[m.group(2)]}.{m.group(3)}"
    return None


def reverse_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation (``n_head``: query heads for q, KV heads for k)."""
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


def _architecture(reader) -> str:
    f = reader.fields["general.architecture"]
    return bytes(f.parts[f.data[0]]).decode()


def _require_gguf(path: str) -> None:
    try:
        import gguf  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{path}: reading a .gguf file needs the 'gguf' package, which is not installed "
                          f"({exc}); pip install gguf, or convert the model to an HF folder (safetensors)") from exc


def load_gguf_config(path: str):
    _require_gguf(path)
    from transformers import AutoConfig

    d, name = os.path.split(os.path.abspath(path))
    return AutoConfig.from_pretrained(d, gguf_file=name, local_files_only=True)


def load_gguf(path: str, dtype: torch.dtype, device: torch.device, tp=None) -> CausalLM:
    """Our model from a ``.gguf`` file, every tensor dequantised to float32 then cast to ``dtype``.

    ``tp``: a ``TPShard``: this rank's shard only; a block of rows is dequantised from its own blocks
    of the file, a block of columns from the whole tensor (one tensor at a time)."""
    _require_gguf(path)
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(path)
    arch = _architecture(reader)
    if arch not in GGUF_ARCHITECTURES:
        raise ValueError(f"{path}: GGUF architecture {arch!r} is not supported; supported: "
                         f"{', '.join(GGUF_ARCHITECTURES)}")
    hf_config = load_gguf_config(path)
    cls, cfg = resolve(hf_config, path)
    tensors = {}
    for t in reader.tensors:
        name = hf_name(t.name)
        if name is not None:
            tensors[name] = t
    if "lm_head.weight" not in tensors:
        cfg.tie_word_embeddings = True

    def shape(name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in reversed(tensors[name].shape.tolist()))

    def rows(name: str, lo: int, hi: int) -> np.ndarray:
        t = tensors[name]
        w = np.asarray(dequantize(t.data[lo:hi], t.tensor_type)).reshape((hi - lo,) + shape(name)[1:])
        if arch == "llama" and (".q_proj." in name or ".k_proj." in name):
            # llama.cpp permutes rows within each head, so a block of whole heads un-permutes on its own
            w = reverse_permute(w, (hi - lo) // cfg.head_dim)
        return w

    def get(name: str) -> torch.Tensor:
        return torch.from_numpy(np.array(rows(name, 0, shape(name)[0]), dtype=np.float32, order="C"))

    def get_part(name: str, dim: int, lo: int, hi: int) -> torch.Tensor:
        if dim == 0:
            w = rows(name, lo, hi)
        else:
            w = rows(name, 0, shape(name)[0])[:, lo:hi]
        return torch.from_numpy(np.array(w, dtype=np.float32, order="C"))  # own, writable copy

    src = WeightSource(get, tensors.keys(), dtype, torch.device(device), path, get_part=get_part, get_shape=shape)
    model = cls.from_weights(cfg, src, tp)
    model.name = path
    return model
