"""The arguments of ``Engine.generate``: validated and resolved before any state changes.

``method_config`` turns the method options into a ``MethodConfig`` (router parsed, fusion preset and
weights resolved, defaults filled) and the sampler's arguments; ``tokenize_prompts`` turns prompts
into token ids. Every error names the argument, its value and what to pass instead.
"""
from __future__ import annotations

import math
import numbers

import torch

from fsgen_engine.methods import METHODS, models_needed
from fsgen_engine.methods.base import MethodConfig
from fsgen_engine.routers import parse_router

TARGETS = (None, "large", "contrastive", "proxy")


def method_config(models: dict, *, method, router, max_new_tokens, temperature, top_k, top_p, min_p, seed,
                  num_draft_tokens, adaptive_draft, target, alpha, beta, preset, mismatch_reference, bild_rollback,
                  bild_max_small, trace_topk) -> tuple[MethodConfig, dict, int | None]:
    """``(MethodConfig, sampler kwargs, seed)`` from ``generate``'s method options (see its docstring);
    ``models``: the engine's loaded models by role (``proxy`` needs a small fine-tuned one)."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not a method; use one of {', '.join(METHODS)}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens!r} must be an integer >= 1")
    check_sampling(temperature, top_k, top_p, min_p)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise ValueError(f"seed={seed!r} must be an integer or None")
    if isinstance(num_draft_tokens, bool) or not isinstance(num_draft_tokens, numbers.Integral) \
            or not 1 <= num_draft_tokens <= 64:
        raise ValueError(f"num_draft_tokens={num_draft_tokens!r} must be an integer in [1, 64]")
    if target == "large":
        target = None
    if target not in TARGETS:
        raise ValueError(f"target={target!r} must be None/'large', 'contrastive' or 'proxy' (speculative only)")
    if target is not None and method != "speculative":
        raise ValueError(f"target={target!r} is only used with method='speculative' (got method={method!r})")
    if mismatch_reference not in (None, "small", "small_ft"):
        raise ValueError(f"mismatch_reference={mismatch_reference!r} must be 'small' (the small base model's "
                         f"argmax, FS-GEN) or 'small_ft'")
    needed = models_needed(method, target)
    if "small_ft" in needed and "small_ft" not in models:
        what = "method='proxy'" if method == "proxy" else "target='proxy'"
        raise ValueError(f"{what} needs a small fine-tuned model: Engine(large, small, small_ft=...)")
    default_router = "max_prob:0.6" if method == "bild" else "always"
    rt = parse_router(default_router if router is None else router)
    fuse_kind = "proxy" if "small_ft" in needed else ("contrastive" if method == "contrastive" or
                                                       target == "contrastive" else None)
    fuse, weights = None, None
    if fuse_kind == "contrastive":
        if preset is None or preset == "fsgen":
            fuse = "contrastive"
        elif preset == "obrien":
            fuse = "contrastive_obrien"
        elif isinstance(preset, (tuple, list)):
            fuse, weights = "weighted", tuple(preset)
        else:
            raise ValueError(f"preset={preset!r} must be 'fsgen', 'obrien' or weights (w_large, w_small)")
    elif fuse_kind == "proxy":
        fuse = "proxy"
    if preset is not None and fuse_kind != "contrastive":
        raise ValueError(f"preset={preset!r} is only used by contrastive decoding (method='contrastive' or "
                         f"target='contrastive')")
    if fuse is not None:
        from fsgen_engine.ops.fuse_logits import resolve_weights

        try:
            resolve_weights(fuse, alpha, beta, weights)
        except ValueError as exc:
            raise ValueError(f"generate(method={method!r}): {exc}") from None
        if alpha is None:
            alpha = 1.0 if fuse == "proxy" else 0.1
        if beta is None and fuse in ("contrastive", "contrastive_obrien"):
            beta = 0.5
    if not isinstance(bild_rollback, numbers.Real) or not bild_rollback > 0:
        raise ValueError(f"bild_rollback={bild_rollback!r} must be a positive number (nats)")
    if isinstance(bild_max_small, bool) or not isinstance(bild_max_small, numbers.Integral) or bild_max_small < 1:
        raise ValueError(f"bild_max_small={bild_max_small!r} must be an integer >= 1")
    check_trace_topk(trace_topk)
    cfg = MethodConfig(method=method, router=rt, fuse=fuse, alpha=alpha, beta=beta, weights=weights,
                       num_draft_tokens=int(num_draft_tokens), adaptive_draft=bool(adaptive_draft),
                       target=target, mismatch_reference=mismatch_reference or "small",
                       bild_rollback=float(bild_rollback), bild_max_small=int(bild_max_small),
                       trace_topk=int(trace_topk))
    sampler_args = dict(temperature=float(temperature), top_k=int(top_k), top_p=float(top_p), min_p=float(min_p))
    return cfg, sampler_args, seed


def tokenize_prompts(prompts, tokenizer, vocab_size: int, max_positions: int, chat: bool) -> list[list[int]]:
    """Token ids of every prompt (strings through ``tokenizer``, with its chat template when ``chat``;
    id lists checked against ``vocab_size``); each must leave room for one new token in
    ``max_positions``."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if isinstance(prompts, torch.Tensor):
        prompts = prompts.tolist() if prompts.dim() == 2 else [prompts.tolist()]
    if not isinstance(prompts, (list, tuple)):
        raise ValueError(f"prompts must be a list of strings or token-id lists, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise ValueError("prompts is empty; pass at least one prompt")
    if all(isinstance(p, numbers.Integral) and not isinstance(p, bool) for p in prompts):
        raise ValueError("prompts looks like one token-id list; wrap it: prompts=[[...ids...]]")
    out = []
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            if tokenizer is None:
                raise ValueError(f"prompt #{i} is a string but the models have no tokenizer; pass token ids")
            if chat and getattr(tokenizer, "chat_template", None):
                ids = tokenizer.apply_chat_template([{"role": "user", "content": p}],
                                                         add_generation_prompt=True, tokenize=True)
                if isinstance(ids, dict) or hasattr(ids, "input_ids"):
                    ids = ids["input_ids"]
            else:
                ids = tokenizer.encode(p)
            ids = [int(t) for t in ids]
        else:
            if isinstance(p, torch.Tensor):
                p = p.reshape(-1).tolist()
            if not isinstance(p, (list, tuple)) or not all(isinstance(t, numbers.Integral) and not isinstance(
                    t, bool) for t in p):
                raise ValueError(f"prompt #{i} must be a string or a list of token ids, got {p!r:.80}")
            ids = [int(t) for t in p]
            bad = [t for t in ids if not 0 <= t < vocab_size]
            if bad:
                raise ValueError(f"prompt #{i} has token id {bad[0]} outside the vocabulary [0, {vocab_size})")
        if not ids:
            raise ValueError(f"prompt #{i} is empty (no tokens); give at least one token")
        if len(ids) >= max_positions:
            raise ValueError(f"prompt #{i} has {len(ids)} tokens, longer than the context of "
                             f"{max_positions} tokens (max_position_embeddings) minus one new token; "
                             f"shorten it")
        out.append(ids)
    return out


MAX_TRACE_TOPK = 1000


def check_num_samples(n, max_batch: int) -> None:
    """``n`` (samples per prompt) must be an int in [1, max_batch]: a prompt's samples are decoded together."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= max_batch:
        raise ValueError(f"n={n!r} must be an integer in [1, max_batch={max_batch}] (samples per prompt, decoded "
                         f"together); raise max_batch for more")


def check_trace_topk(trace_topk) -> None:
    """``trace_topk`` must be an int in [0, MAX_TRACE_TOPK]: the bound keeps a trace (K probabilities and
    K ids per token and model) from silently growing to vocabulary size."""
    if isinstance(trace_topk, bool) or not isinstance(trace_topk, numbers.Integral) \
            or not 0 <= trace_topk <= MAX_TRACE_TOPK:
        raise ValueError(f"trace_topk={trace_topk!r} must be an integer in [0, {MAX_TRACE_TOPK}]: the K of the "
                         f"top-K distributions recorded per token (0 = off; research records use 100)")


def check_sampling(temperature, top_k, top_p, min_p) -> None:
    def num(name, v):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
            raise ValueError(f"{name}={v!r} must be a finite number")
        return float(v)

    if num("temperature", temperature) < 0:
        raise ValueError(f"temperature={temperature} must be >= 0 (0 = greedy)")
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 0:
        raise ValueError(f"top_k={top_k!r} must be an integer >= 0 (0 = off)")
    if not 0.0 < num("top_p", top_p) <= 1.0:
        raise ValueError(f"top_p={top_p} must be in (0, 1] (1 = off)")
    if not 0.0 <= num("min_p", min_p) <= 1.0:
        raise ValueError(f"min_p={min_p} must be in [0, 1] (0 = off)")
