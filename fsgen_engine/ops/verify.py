"""ops.verify: speculative-decoding verification (greedy or lossless rejection sampling).

See ``fsgen_engine.reference.verify`` for the definition. The target distribution at each
position is exactly the ``ops.sample`` one (temperature, top-k, top-p, min-p, NaN and ``+inf``
handling), so a verified sequence has the distribution of sampling the target model directly.

Hot path: pass ``params=SamplingTensors.prepare(...)`` (built once per generate call) and
``_validated=True`` to skip the value checks that need a host sync (num_draft range, draft token
range, draft_probs required when sampling). Out-of-range values then never crash a kernel: draft
tokens outside [0, V) are rejected, num_draft is clamped to [0, K], and a missing ``draft_probs``
means a deterministic draft (q = one-hot on the draft token).
"""
from __future__ import annotations

import torch

from fsgen_engine.ops._dispatch import Op
from fsgen_engine.ops._native import call_native, dtype_code
from fsgen_engine.ops._sampling import SamplingTensors, check_logits, draw_seed
from fsgen_engine.ops._split import split_args
from fsgen_engine.ops._validate import FLOAT_DTYPES, check_last_dim_contiguous, check_tensor

OP = Op("verify", native=True, triton=True)
NAME = OP.name


def _check_inputs(draft_tokens, target_logits, draft_probs, num_draft):
    check_tensor(NAME, "draft_tokens", draft_tokens, ndim=2, dtypes=(torch.int64,))
    check_logits(NAME, "target_logits", target_logits, 3)
    device = target_logits.device
    b, k = draft_tokens.shape
    check_tensor(NAME, "draft_tokens", draft_tokens, device=device)
    if tuple(target_logits.shape[:2]) != (b, k + 1):
        raise ValueError(f"{NAME}: target_logits has shape {tuple(target_logits.shape)} but draft_tokens is [{b}, {k}]; "
                         f"target_logits must be [B, K+1, V] = [{b}, {k + 1}, V] (one more position for the bonus token)")
    v = target_logits.shape[2]
    if draft_probs is not None:
        check_tensor(NAME, "draft_probs", draft_probs, ndim=3, dtypes=FLOAT_DTYPES, device=device)
        if tuple(draft_probs.shape) != (b, k, v):
            raise ValueError(f"{NAME}: draft_probs has shape {tuple(draft_probs.shape)}; it must be [B, K, V] = "
                             f"[{b}, {k}, {v}] (the draft distribution at each drafted position)")
        check_last_dim_contiguous(NAME, "draft_probs", draft_probs)
    if num_draft is not None:
        check_tensor(NAME, "num_draft", num_draft, ndim=1, dtypes=(torch.int32, torch.int64), device=device)
        if num_draft.shape[0] != b:
            raise ValueError(f"{NAME}: num_draft has shape {tuple(num_draft.shape)}; it must be [B] = [{b}]")


def _check_values(draft_tokens, v, draft_probs, num_draft, params):
    # One host sync: only on the validating (non hot) path.
    b, k = draft_tokens.shape
    nd = num_draft
    bad_nd = (nd < 0) | (nd > k)
    pos = torch.arange(k, device=draft_tokens.device)
    live = pos[None, :] < nd[:, None]
    bad_tok = live & ((draft_tokens < 0) | (draft_tokens >= v))
    sampled = params.temperature > 0
    flags = torch.stack([bad_nd.any(), bad_tok.any(), sampled.any()]).tolist()
    if flags[0]:
        raise ValueError(f"{NAME}: num_draft={nd[bad_nd][0].item()} is out of range [0, K={k}]; "
                         f"clamp it to the number of drafted tokens")
    if flags[1]:
        raise ValueError(f"{NAME}: draft_tokens contains {draft_tokens[bad_tok][0].item()}, outside the vocabulary "
                         f"[0, {v}); pass token ids of the target vocabulary")
    if flags[2] and draft_probs is None:
        raise ValueError(f"{NAME}: draft_probs=None but temperature > 0 for some rows; lossless rejection sampling "
                         f"needs the draft distribution: pass draft_probs [B, K, V] (or use temperature=0)")


def verify(draft_tokens: torch.Tensor, target_logits: torch.Tensor, *, draft_probs: torch.Tensor | None = None,
           num_draft: torch.Tensor | None = None, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0,
           generator: torch.Generator | None = None, backend: str = "auto", params: SamplingTensors | None = None,
           _validated: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Verify K drafted tokens per row against the target model.

    draft_tokens: ``[B, K]`` int64. target_logits: ``[B, K+1, V]`` float32/float16/bfloat16, stride 1
    along V. draft_probs: ``[B, K, V]`` draft probabilities (required when temperature > 0).
    num_draft: ``[B]`` int (row b uses its first num_draft[b] drafts; default K).
    temperature/top_k/top_p/min_p: scalars or ``[B]`` tensors, as in ``ops.sample``; or ``params``.
    Returns ``(num_accepted [B] int64, next_token [B] int64)``: next_token is the correction at the
    first rejection, or the bonus token when all num_draft[b] drafts were accepted.
    """
    _check_inputs(draft_tokens, target_logits, draft_probs, num_draft)
    b, k = draft_tokens.shape
    v = target_logits.shape[2]
    device = target_logits.device
    if k > 0 and draft_tokens.stride(1) != 1:
        draft_tokens = draft_tokens.contiguous()  # [B, K] ints: a copy is negligible
    params = SamplingTensors.resolve(NAME, params, b, device, temperature=temperature, top_k=top_k, top_p=top_p,
                                     min_p=min_p)
    if num_draft is None:
        num_draft = torch.full((b,), k, dtype=torch.int64, device=device)
    else:
        num_draft = num_draft.to(torch.int64).contiguous()
    if not _validated and b > 0:
        _check_values(draft_tokens, v, draft_probs, num_draft, params)
    which = OP.choose(device, backend)
    if b == 0:
        empty = torch.empty(0, dtype=torch.int64, device=device)
        return empty, empty.clone()
    return OP.run(which, draft_tokens, target_logits, draft_probs, num_draft, params, generator)


@OP.impl("reference")
def _reference(backend, draft_tokens, target_logits, draft_probs, num_draft, params, generator):
    from fsgen_engine.reference.verify import verify_reference

    return verify_reference(draft_tokens, target_logits, draft_probs, num_draft.clamp(0, draft_tokens.shape[1]),
                            params.temperature, params.top_k, params.top_p, params.min_p, generator)


@OP.impl("cpu", "cuda", "triton")
def _kernel(backend, draft_tokens, target_logits, draft_probs, num_draft, params, generator):
    b, k = draft_tokens.shape
    device = target_logits.device
    seed = draw_seed(generator, device)
    accepted = torch.empty(b, dtype=torch.int64, device=device)
    next_token = torch.empty(b, dtype=torch.int64, device=device)
    if backend == "triton":
        from fsgen_engine.kernels.sample_split import verify_any_triton as verify_triton

        verify_triton(draft_tokens, target_logits, draft_probs, num_draft, params.temperature, params.top_k,
                      params.top_p, params.min_p, seed, accepted, next_token)
        return accepted, next_token
    q = draft_probs
    # CUDA: one logical row per position, 512-thread blocks, at least 2048 columns per split.
    split, _ws = (split_args(NAME, device, b * (k + 1), target_logits.shape[2], min_cols=2048, blocks_per_sm=2)
                  if backend == "cuda" else ({}, None))
    if backend == "cuda":
        split["all_greedy"] = params.all_greedy
    call_native(NAME, backend, device, draft_tokens=draft_tokens.data_ptr(), draft_stride=draft_tokens.stride(0),
                logits=target_logits.data_ptr(), logits_stride_b=target_logits.stride(0),
                logits_stride_k=target_logits.stride(1), logits_dtype=dtype_code(target_logits),
                draft_probs=0 if q is None else q.data_ptr(), probs_stride_b=0 if q is None else q.stride(0),
                probs_stride_k=0 if q is None else q.stride(1), probs_dtype=0 if q is None else dtype_code(q),
                num_draft=num_draft.data_ptr(), batch=b, max_draft=k, vocab=target_logits.shape[2],
                temperature=params.temperature.data_ptr(), top_k=params.top_k.data_ptr(),
                top_p=params.top_p.data_ptr(), min_p=params.min_p.data_ptr(), seed=seed.data_ptr(),
                out_accepted=accepted.data_ptr(), out_next=next_token.data_ptr(), **split)
    return accepted, next_token
