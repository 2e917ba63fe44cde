"""Loading from a local HF folder (config.json + single or sharded safetensors) or an in-memory HF model."""
from __future__ import annotations

import json
import os

import torch

from fsgen_engine.models.base import CausalLM, WeightSource
from fsgen_engine.models.registry import resolve


def _safetensors_index(folder: str) -> dict[str, str]:
    """tensor name -> file path for a folder's safetensors checkpoint (sharded or not)."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        return {k: os.path.join(folder, v) for k, v in weight_map.items()}
    single = os.path.join(folder, "model.safetensors")
    files = [single] if os.path.exists(single) else sorted(
        os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no model.safetensors, model.safetensors.index.json or *.safetensors; "
                                f"save the model with save_pretrained(..., safe_serialization=True)")
    from safetensors import safe_open

    out = {}
    for path in files:
        with safe_open(path, framework="pt") as f:
            out.update({k: path for k in f.keys()})
    return out


def _eos_ids(folder: str, hf_config) -> list[int]:
    ids = []
    for src in (getattr(hf_config, "eos_token_id", None), _generation_eos(folder)):
        for e in (src if isinstance(src, (list, tuple)) else [src]):
            if e is not None and int(e) not in ids:
                ids.append(int(e))
    return ids


def _generation_eos(folder: str):
    path = os.path.join(folder, "generation_config.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f).get("eos_token_id")


# (embedding, LM head) parameter names of the families, for checkpoints that store a tied pair once
TIED_NAMES = (("model.embed_tokens.weight", "lm_head.weight"), ("gpt_neox.embed_in.weight", "embed_out.weight"))


def load_hf_folder(folder: str, dtype: torch.dtype, device: torch.device, tp=None) -> CausalLM:
    """Our model from a local HF folder; weights (fp32/fp16/bf16) cast to ``dtype`` on ``device``.

    ``tp``: a ``TPShard``: load only this rank's shard, each weight's block read from the file alone."""
    from safetensors import safe_open
    from transformers import AutoConfig

    if not os.path.exists(os.path.join(folder, "config.json")):
        raise FileNotFoundError(f"{folder}: no config.json; expected a local HF model folder (save_pretrained) "
                                f"or a .gguf file")
    hf_config = AutoConfig.from_pretrained(folder, local_files_only=True)
    cls, cfg = resolve(hf_config, folder)
    cfg.eos_token_ids = _eos_ids(folder, hf_config)
    index = _safetensors_index(folder)
    # A tied pair is stored once; safetensors' save_model may keep either name (the LM head's too), so
    # the embedding is then read under the head's name.
    alias = {}
    if getattr(hf_config, "tie_word_embeddings", False):
        alias = {embed: head for embed, head in TIED_NAMES if embed not in index and head in index}
    handles: dict[str, object] = {}

    def handle(name: str):
        path = index[name]
        if path not in handles:
            handles[path] = safe_open(path, framework="pt")
        return handles[path]

    def get(name: str) -> torch.Tensor:
        name = alias.get(name, name)
        return handle(name).get_tensor(name)

    def get_shape(name: str):
        name = alias.get(name, name)
        return handle(name).get_slice(name).get_shape()

    def get_part(name: str, dim: int, lo: int, hi: int) -> torch.Tensor:
        name = alias.get(name, name)
        sl = handle(name).get_slice(name)
        # reads only the block's bytes; a block of rows comes back as a view of the memory-mapped file, so it
        # is copied: a live view would keep the map, and every page the column slices read, resident
        return sl[lo:hi].clone() if dim == 0 else sl[:, lo:hi]

    src = WeightSource(get, [*index, *alias], dtype, torch.device(device), folder, get_part=get_part,
                       get_shape=get_shape)
    model = cls.from_weights(cfg, src, tp)
    handles.clear()
    return model


def from_hf_model(hf_model, dtype: torch.dtype | None = None, device=None) -> CausalLM:
    """Our model over an in-memory transformers ``PreTrainedModel`` (e.g. ``LlamaForCausalLM``).

    The HF tensors are shared (no copy) when ``dtype``/``device`` match theirs (the defaults), else cast
    copies are made. The HF model must stay unchanged while ours is in use.
    """
    params = dict(hf_model.named_parameters())
    params.update(dict(hf_model.named_buffers()))
    first = next(iter(hf_model.parameters()))
    dtype = first.dtype if dtype is None else dtype
    if isinstance(dtype, str):
        from fsgen_engine.core import resolve_dtype

        dtype = resolve_dtype(dtype, first.device)
    device = first.device if device is None else torch.device(device)
    cls, cfg = resolve(hf_model.config, type(hf_model).__name__)
    gen = getattr(hf_model, "generation_config", None)
    extra = getattr(gen, "eos_token_id", None) if gen is not None else None
    for e in (extra if isinstance(extra, (list, tuple)) else [extra]):
        if e is not None and int(e) not in cfg.eos_token_ids:
            cfg.eos_token_ids.append(int(e))
    src = WeightSource(lambda n: params[n].detach(), params.keys(), dtype, device, type(hf_model).__name__)
    model = cls.from_weights(cfg, src)
    model.name = getattr(hf_model.config, "_name_or_path", None) or type(hf_model).__name__
    return model
