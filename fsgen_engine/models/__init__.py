"""Model families over the engine's paged KV cache, matching HF transformers' logits.

    model, tokenizer = load_model("path/to/hf-folder" or "model.gguf", dtype="float32", device="cpu")
    model = from_hf_model(hf_model, dtype, device)       # shares the HF tensors when dtype/device match
    small = model.early_exit(8)                           # first 8 layers + final norm + LM head, same weights
    logits = model.forward(batch, kv)                     # ForwardBatch, ModelKVCache -> [M, V] float32

Families (``registry``): llama-style (Llama 2/3, Mistral, SmolLM, Qwen1.5/2/2.5, Qwen3) and GPT-NeoX.
Metadata the engine reads: ``num_layers``, ``num_kv_heads``, ``head_dim``, ``vocab_size``, ``dtype``,
``device``, ``config`` (``ModelConfig``), ``eos_token_ids``, ``kv_spec``.
"""
from __future__ import annotations

import os

from fsgen_engine.models.base import CausalLM
from fsgen_engine.models.config import ModelConfig
from fsgen_engine.models.loader import from_hf_model, load_hf_folder
from fsgen_engine.models.registry import supported

__all__ = ["load_model", "from_hf_model", "CausalLM", "ModelConfig", "supported"]


def load_model(path_or_spec, dtype="float32", device="cpu", *, tokenizer: bool = True, tp=None):
    """Load a local HF folder or a ``.gguf`` file; returns ``(model, tokenizer)``.

    ``tp``: a ``models.tensor_parallel.TPShard``: load only that rank's shard (its forward then runs the
    collectives of the shard's process group, which must be initialised).
    ``dtype``: torch dtype or 'auto'/'float32'/'float16'/'bfloat16'; ``device``: 'cpu', 'cuda', 'auto', ...
    The tokenizer is None for a folder without tokenizer files (or when ``tokenizer=False``). Nothing is
    downloaded: a path that does not exist is a FileNotFoundError.
    """
    from fsgen_engine.core import resolve_device, resolve_dtype

    path = os.fspath(path_or_spec)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model path {path!r} does not exist; expected a local HF model folder "
                                f"(config.json + safetensors) or a .gguf file (hub downloads are not supported)")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if os.path.isdir(path):
        from fsgen_engine.models.tokenizer import load_tokenizer

        model = load_hf_folder(path, dt, dev, tp)
        tok = load_tokenizer(path) if tokenizer else None
    elif path.endswith(".gguf"):
        from fsgen_engine.models.gguf_loader import load_gguf
        from fsgen_engine.models.tokenizer import load_gguf_tokenizer

        model = load_gguf(path, dt, dev, tp)
        tok = load_gguf_tokenizer(path) if tokenizer else None
    else:
        raise ValueError(f"model path {path!r} is a file but not a .gguf; expected a local HF model folder or a "
                         f".gguf file")
    if tok is not None:
        eos = getattr(tok, "eos_token_id", None)
        if eos is not None and int(eos) not in model.config.eos_token_ids:
            model.config.eos_token_ids.append(int(eos))
    model.tokenizer = tok
    model.name = model.name or path
    return model, tok
