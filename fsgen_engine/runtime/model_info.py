"""What the engine reads from a model and its tokenizer (geometry, vocab, EOS, context), and the
load-time check that two models share one tokenizer. (Device/dtype resolution: ``core/device.py``.)"""
from __future__ import annotations

import torch


def _first(model, *names, default=None):
    for n in names:
        v = getattr(model, n, None)
        if v is not None:
            return v
    cfg = getattr(model, "config", None)
    for n in names:
        v = getattr(cfg, n, None) if cfg is not None else None
        if v is not None:
            return v
    return default


def vocab_size_of(model) -> int:
    v = _first(model, "vocab_size")
    if v is None:
        raise ValueError(f"model {type(model).__name__} does not expose vocab_size")
    return int(v)


def max_positions_of(model) -> int:
    return int(_first(model, "max_position_embeddings", "max_positions", "max_seq_len", "context_length",
                      default=1 << 30))


def eos_ids_of(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    for v in (_first(model, "eos_token_ids", "eos_ids", "eos_token_id"),
              getattr(tokenizer, "eos_token_id", None) if tokenizer is not None else None):
        if v is None:
            continue
        if isinstance(v, (list, tuple, set, frozenset)):
            ids.update(int(x) for x in v)
        else:
            ids.add(int(v))
    return ids


def kv_spec_of(model, dtype: torch.dtype, device: torch.device):
    from fsgen_engine.kv import KVModelSpec

    spec = getattr(model, "kv_spec", None)
    if callable(spec):
        spec = spec()
    if isinstance(spec, KVModelSpec):
        return spec
    kv_dtype = _first(model, "kv_dtype", "dtype", default=dtype)
    if not isinstance(kv_dtype, torch.dtype):
        kv_dtype = dtype
    return KVModelSpec(int(_first(model, "num_layers")), int(_first(model, "num_kv_heads")),
                       int(_first(model, "head_dim")), kv_dtype, device)


def _id_to_token(tok) -> dict[int, str]:
    return {int(i): t for t, i in tok.get_vocab().items()}


def check_tokenizers(tok_a, tok_b, name_a: str, name_b: str, vocab_a: int, vocab_b: int) -> None:
    """Raise ValueError naming both models unless their tokenizers agree on every shared id.
    Model vocab sizes may differ (padding rows); with no tokenizer on one side nothing is compared."""
    if tok_a is None or tok_b is None or tok_a is tok_b:
        return
    a, b = _id_to_token(tok_a), _id_to_token(tok_b)
    shared = set(a) & set(b)
    diff = sorted(i for i in shared if a[i] != b[i])
    only = sorted(set(a) ^ set(b))
    if diff:
        i = diff[0]
        raise ValueError(f"tokenizer mismatch between {name_a} and {name_b}: {len(diff)} of {len(shared)} shared ids "
                         f"map to different tokens (e.g. id {i}: {a[i]!r} vs {b[i]!r}); collaborative decoding needs "
                         f"one tokenizer; use models of the same family")
    # ids present in only one tokenizer are fine when they sit past the other model's vocabulary (padding)
    lo = min(vocab_a, vocab_b)
    inside = [i for i in only if i < lo]
    if inside:
        i = inside[0]
        who = name_a if i in a else name_b
        raise ValueError(f"tokenizer mismatch between {name_a} and {name_b}: id {i} exists only in {who}'s tokenizer "
                         f"({len(inside)} such ids below the shared vocabulary size {lo}); use models of the same "
                         f"family")
