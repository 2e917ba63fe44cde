"""A plain-HF fallback backend for ``FSGenOpenSource`` (``backend="hf"``): the research loop over HF
models, batch 1, full recompute every step (no KV cache, no kernels). It exists to check the engine
backend and to run models the engine cannot load; it is slow (quadratic in length).

It returns an engine-style ``GenerationOutput`` (token ids, stats, per-token trace) so both backends
share the record-building code. Greedy when ``temperature == 0``, else sampling from the fused
distribution at ``temperature`` (speculative sampling is not implemented here).
"""
from __future__ import annotations

import math

import torch

from fsgen_engine.outputs import GenerationOutput, GenerationStats, Trace, TraceStep


@torch.no_grad()
def _logits(model, ids: list[int], device) -> torch.Tensor:
    """``[len(ids), V]`` float32 logits of every position."""
    return model(torch.tensor([ids], device=device)).logits[0].to(torch.float32)


def _stats(z: torch.Tensor) -> tuple[float, float, float, int]:
    logp = torch.log_softmax(z, -1)
    p = logp.exp()
    top = p.topk(min(2, p.numel())).values
    ent = float(-(torch.where(p > 0, p * logp, torch.zeros_like(p))).sum())
    margin = float(top[0] - top[1]) if top.numel() > 1 else float(top[0])
    return ent, float(top[0]), margin, int(z.argmax())


def _fires(router: str, ent: float, p1: float, margin: float, learned=None, z=None) -> bool:
    base, _, arg = router.partition(":")
    if base == "always":
        return True
    if base == "never":
        return False
    if base == "max_prob":
        return p1 < float(arg)
    if base == "margin":
        return margin < float(arg)
    if base == "entropy":
        return ent > float(arg)
    if base == "learned":
        from fsgen_engine.router_features import features_from_logits
        from fsgen_engine.router_format import predict_fire

        spec = learned["features"]
        if spec.startswith("topk_only:"):  # a bare research SVM on top-k probabilities
            k = int(spec.split(":")[1])
            x = torch.softmax(z, -1).topk(k).values[None].double().cpu().numpy()
        else:
            x = features_from_logits(z[None], spec)
        return bool(predict_fire(learned, x)[0])
    raise ValueError(f"router {router!r} is not supported by the hf backend")


def _pick(z: torch.Tensor, temperature: float, gen: torch.Generator | None) -> int:
    if temperature <= 0:
        return int(z.argmax())
    p = torch.softmax(z / temperature, -1)
    return int(torch.multinomial(p.cpu(), 1, generator=gen))


def hf_generate(large, small, small_ft, prompt: list[int], *, method: str, router: str, max_new_tokens: int,
                stop_ids: list[list[int]], temperature: float = 0.0, seed: int | None = None, alpha=None,
                beta=None, preset: str = "fsgen", num_draft_tokens: int = 5, learned=None) -> GenerationOutput:
    device = next(large.parameters()).device
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    ids, out, tr = list(prompt), [], Trace()
    st = GenerationStats()

    def stopped() -> bool:
        return any(len(s) and ids[-len(s):] == list(s) for s in stop_ids)

    if method == "speculative":
        k_draft = int(num_draft_tokens)
        while len(out) < max_new_tokens and not (out and stopped()):
            st.large_calls += 1
            draft, stats = [], []
            for _ in range(k_draft):
                z = _logits(small, ids + draft, device)[-1]
                stats.append(_stats(z))
                draft.append(stats[-1][3])
            zl = _logits(large, ids + draft, device)[len(ids) - 1:]
            for k in range(k_draft + 1):
                t = _pick(zl[k], temperature, gen)
                e, p1, m, sa = stats[k] if k < k_draft else (float("nan"),) * 3 + (-1,)
                src = "draft" if k < k_draft and t == draft[k] else "large"
                st.mismatches += int(k < k_draft and t != draft[k])
                tr.append(TraceStep(len(out), e, p1, m, True, t, sa, int(zl[k].argmax()), src))
                ids.append(t), out.append(t)
                if src == "large" or len(out) >= max_new_tokens or stopped():
                    break
    else:
        for _ in range(max_new_tokens):
            sys1 = small_ft if method == "proxy" else small
            z_s = _logits(sys1, ids, device)[-1]
            ent, p1, m, sa = _stats(z_s)
            ref = sa
            if _fires(router, ent, p1, m, learned, z_s):
                st.large_calls += 1
                z_l = _logits(large, ids, device)[-1]
                v = min(z_l.numel(), z_s.numel())
                if method == "oracle":
                    fused = z_l
                elif method == "contrastive":
                    a, b = (0.1 if alpha is None else alpha), (0.5 if beta is None else beta)
                    zl, zs = z_l[:v], z_s[:v]
                    fused = (zs + b * (zl - zs)).masked_fill(zl < math.log(a) + zl.max(), float("-inf"))
                elif method == "proxy":
                    z_b = _logits(small, ids, device)[-1][:v]
                    fused = z_l[:v] + (1.0 if alpha is None else alpha) * (z_s[:v] - z_b)
                    ref = int(z_b.argmax())  # FS-GEN counts proxy mismatches against the small base model
                else:
                    raise ValueError(f"method {method!r} is not supported by the hf backend")
                t = _pick(fused, temperature, gen)
                st.mismatches += int(t != ref)
                tr.append(TraceStep(len(out), ent, p1, m, True, t, ref, int(z_l.argmax()),
                                    "large" if method == "oracle" else "fused"))
            else:
                t = _pick(z_s, temperature, gen)
                tr.append(TraceStep(len(out), ent, p1, m, False, t, sa, -1, "small"))
            ids.append(t), out.append(t)
            if stopped():
                break
    st.total_tokens = len(out)
    reason = "stop" if out and stopped() else "length"
    return GenerationOutput(token_ids=out, text="", finish_reason=reason, stats=st, trace=tr,
                            prompt=list(prompt), method=method, router=router)
