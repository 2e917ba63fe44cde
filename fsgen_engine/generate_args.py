"""The arguments of ``Engine.generate``: validated and resolved before any state changes.

``SamplingParams`` (``core/sampling.py``) says how tokens are chosen, :class:`MethodOptions` holds the
options only some methods read; ``method_config`` resolves them with the method and router into the
``MethodConfig`` a method runs with (router parsed, fusion preset and weights resolved, defaults
filled), ``tokenize_prompts`` turns prompts into token ids. Every error names the argument, its
value and what to pass instead. ``generate_kwargs`` maps the flat keywords of earlier releases
(``temperature=``, ``num_draft_tokens=``, ...) onto the two objects.
"""
from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass, fields

import torch

from fsgen_engine.core.sampling import SamplingParams
from fsgen_engine.methods import METHODS, models_needed
from fsgen_engine.methods.base import MethodConfig
from fsgen_engine.methods.draft_stop import MAX_SKIP_ROUNDS, parse_draft_stop
from fsgen_engine.routers import parse_router

TARGETS = (None, "large", "contrastive", "proxy")
MAX_DRAFT_TOKENS = 64   # speculative K bound: a round's drafts run one forward each


@dataclass(frozen=True)
class MethodOptions:
    """Options read by some methods only (the rest ignore them; each is checked by ``method_config``).

    num_draft_tokens: speculative K in [1, 64]; adaptive_draft: per-row K in [1, 2K] (+1 after a fully
        accepted round, -1 after a rejection). target: speculative target, None/"large",
        "contrastive" or "proxy" (lossless w.r.t. the fused distribution). draft_stop: speculative
        only, stop a row's drafting where System 1 is unsure of the token it just drafted:
        ``"entropy:T"``, ``"max_prob:T"``, ``"margin:T"`` or ``"learned:PATH"`` (the router grammar;
        methods/draft_stop.py); None = draft K every round. draft_backoff: with draft_stop, after a
        row's rule fires on its first draft the row skips the drafter for 1, 2, 4, ... up to
        ``draft_backoff`` rounds (plain large steps; large target only); 0 = never skip.
    alpha, beta, preset: fusion parameters. contrastive: preset ``"fsgen"`` (default; alpha 0.1,
        beta 0.5), ``"obrien"``, or weights ``(w_l, w_s)``; proxy: alpha (default 1.0).
    mismatch_reference: proxy only, ``"small"`` (the small base model's argmax, FS-GEN, default) or
        ``"small_ft"``.
    bild_rollback (5.0 nats) / bild_max_small (10): BiLD's rollback threshold and small-run limit.
    """

    num_draft_tokens: int = 5
    adaptive_draft: bool = False
    target: str | None = None
    draft_stop: str | None = None
    draft_backoff: int = MAX_SKIP_ROUNDS
    alpha: float | None = None
    beta: float | None = None
    preset: str | tuple | None = None
    mismatch_reference: str | None = None
    bild_rollback: float = 5.0
    bild_max_small: int = 10


SAMPLING_KEYS = ("temperature", "top_k", "top_p", "min_p", "seed")
OPTION_KEYS = tuple(f.name for f in fields(MethodOptions))


def generate_kwargs(**flat) -> dict:
    """Flat ``generate`` keywords of earlier releases -> the current ones: the sampling keywords
    become ``sampling=SamplingParams(...)``, the method options ``options=MethodOptions(...)``, the
    rest pass through. For callers that hold one flat dict (CLI arguments, sweep configurations)."""
    out = {k: v for k, v in flat.items() if k not in SAMPLING_KEYS and k not in OPTION_KEYS}
    s = {k: flat[k] for k in SAMPLING_KEYS if k in flat}
    o = {k: flat[k] for k in OPTION_KEYS if k in flat}
    if s:
        if out.get("sampling") is not None:
            raise ValueError(f"pass sampling=SamplingParams(...) or {', '.join(s)}, not both")
        out["sampling"] = SamplingParams(**s)
    if o:
        if out.get("options") is not None:
            raise ValueError(f"pass options=MethodOptions(...) or {', '.join(o)}, not both")
        out["options"] = MethodOptions(**o)
    return out


def resolve_legacy(sampling, options, legacy: dict) -> tuple[SamplingParams, MethodOptions]:
    """``generate``'s ``sampling`` and ``options`` with its deprecated flat keywords (``legacy``)
    folded in (a ``DeprecationWarning`` names them); unknown keywords are a ``TypeError``."""
    unknown = [k for k in legacy if k not in SAMPLING_KEYS and k not in OPTION_KEYS]
    if unknown:
        raise TypeError(f"generate() got an unexpected keyword argument {unknown[0]!r}")
    if legacy:
        warnings.warn(f"generate({', '.join(f'{k}=' for k in legacy)}...) is deprecated and will be removed in the "
                      f"next release: pass sampling=SamplingParams(temperature=..., top_k=..., top_p=..., min_p=..., "
                      f"seed=...) and options=MethodOptions(num_draft_tokens=..., ...)", DeprecationWarning,
                      stacklevel=3)
        kw = generate_kwargs(sampling=sampling, options=options, **legacy)
        sampling, options = kw.get("sampling"), kw.get("options")
    if sampling is None:
        sampling = SamplingParams()
    if not isinstance(sampling, SamplingParams):
        raise ValueError(f"sampling={sampling!r} must be a fsgen_engine.SamplingParams (temperature, top_k, top_p, "
                         f"min_p, seed)")
    if options is None:
        options = MethodOptions()
    if not isinstance(options, MethodOptions):
        raise ValueError(f"options={options!r} must be a fsgen_engine.MethodOptions")
    return sampling, options


def method_config(models: dict, *, method, router, options: MethodOptions, trace_topk) -> MethodConfig:
    """The ``MethodConfig`` of ``generate``'s method options (see ``MethodOptions``); ``models``: the
    engine's loaded models by role (``proxy`` needs a small fine-tuned one)."""
    o = options
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not a method; use one of {', '.join(METHODS)}")
    num_draft_tokens, target, mismatch_reference = o.num_draft_tokens, o.target, o.mismatch_reference
    alpha, beta, preset = o.alpha, o.beta, o.preset
    if isinstance(num_draft_tokens, bool) or not isinstance(num_draft_tokens, numbers.Integral) \
            or not 1 <= num_draft_tokens <= MAX_DRAFT_TOKENS:
        raise ValueError(f"num_draft_tokens={num_draft_tokens!r} must be an integer in [1, {MAX_DRAFT_TOKENS}]")
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
    bild_rollback, bild_max_small = o.bild_rollback, o.bild_max_small
    if not isinstance(bild_rollback, numbers.Real) or not bild_rollback > 0:
        raise ValueError(f"bild_rollback={bild_rollback!r} must be a positive number (nats)")
    if isinstance(bild_max_small, bool) or not isinstance(bild_max_small, numbers.Integral) or bild_max_small < 1:
        raise ValueError(f"bild_max_small={bild_max_small!r} must be an integer >= 1")
    check_trace_topk(trace_topk)
    draft_stop = o.draft_stop
    if draft_stop is not None and method != "speculative":
        raise ValueError(f"draft_stop={draft_stop!r} is only used with method='speculative' (got method={method!r})")
    draft_backoff = o.draft_backoff
    if isinstance(draft_backoff, bool) or not isinstance(draft_backoff, numbers.Integral) \
            or not 0 <= draft_backoff <= MAX_DRAFT_TOKENS:
        raise ValueError(f"draft_backoff={draft_backoff!r} must be an integer in [0, {MAX_DRAFT_TOKENS}] (rounds a row "
                         f"skips the drafter after its draft_stop rule fired on the first draft; 0 = never skip)")
    if draft_backoff != MAX_SKIP_ROUNDS and draft_stop is None:
        raise ValueError(f"draft_backoff={draft_backoff!r} is only used with draft_stop=...; pass a draft_stop rule "
                         f"or leave draft_backoff at its default")
    cfg = MethodConfig(method=method, router=rt, fuse=fuse, alpha=alpha, beta=beta, weights=weights,
                       num_draft_tokens=int(num_draft_tokens), adaptive_draft=bool(o.adaptive_draft),
                       target=target, draft_stop=parse_draft_stop(draft_stop), draft_backoff=int(draft_backoff),
                       mismatch_reference=mismatch_reference or "small",
                       bild_rollback=float(bild_rollback), bild_max_small=int(bild_max_small),
                       trace_topk=int(trace_topk))
    return cfg


def check_max_new_tokens(max_new_tokens) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens!r} must be an integer >= 1")


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
