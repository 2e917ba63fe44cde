"""A straightforward re-implementation of the research code's greedy loop (FSGenOpenSource, batch 1,
full recompute every step, no KV cache) over HF models: the ground truth the compat layer is
compared against. Stops after an EOS token (kept in the counts, as the research code does)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def _last(model, ids):
    return model(torch.tensor([ids])).logits[0, -1].to(torch.float32)


def _fires(router: str, z_s) -> bool:
    if router == "normal":
        return True
    if router == "none":
        return False
    p = F.softmax(z_s, dim=-1)
    top = p.topk(10).values
    if router == "threshold":
        return bool(top[0] < 0.5)
    if router == "delta_threshold":
        return bool((top[0] - top[1]) / 2 < 0.2)
    raise ValueError(router)


def research_generate(large, small, prompt, max_tokens, method, router="normal", small_ft=None, eos=None,
                      alpha=None, beta=0.5, K=5):
    """Returns dict(tokens=[ids], total, latent, mismatch, if_match_now=[...], slm_top=[ids], llm_top=[ids])."""
    ids = list(prompt)
    out, flags = [], []
    latent = mismatch = 0
    if method == "SpeculativeDecoding":
        assert router == "normal"
        while len(out) < max_tokens:
            latent += 1
            draft = []
            for _ in range(K):
                draft.append(int(_last(small, ids + draft).argmax()))
            with torch.no_grad():
                zl = large(torch.tensor([ids + draft])).logits[0, len(ids) - 1:].to(torch.float32)
            targets = zl.argmax(-1).tolist()  # K + 1 large tokens
            new, rejected = [], False
            for k in range(K):
                new.append(targets[k])
                if targets[k] != draft[k]:
                    rejected = True
                    break
            if not rejected:
                new.append(targets[K])
            mismatch += int(rejected)
            for t in new:
                ids.append(t)
                out.append(t)
                if t == eos or len(out) >= max_tokens:
                    break
            if out and (out[-1] == eos or len(out) >= max_tokens):
                break
        return dict(tokens=out, total=len(out), latent=latent, mismatch=mismatch, if_match_now=[])
    slm_top, llm_top = [], []
    for _ in range(max_tokens):
        sys1 = small_ft if method == "ProxyFineTuning" else small
        z_s = _last(sys1, ids)
        slm_top.append(F.softmax(z_s, -1).topk(min(100, z_s.numel())).indices.tolist())
        if _fires(router, z_s):
            latent += 1
            z_l = _last(large, ids)
            llm_top.append(F.softmax(z_l, -1).topk(min(100, z_l.numel())).indices.tolist())
            v = min(z_l.numel(), z_s.numel())
            if method == "OracleDecoding":
                tok, ref = int(z_l.argmax()), int(z_s.argmax())
            elif method == "ContrastiveDecoding":
                a = 0.1 if alpha is None else alpha
                zl, zs = z_l[:v], z_s[:v]
                cutoff = math.log(a) + zl.max()
                fused = (zs + beta * (zl - zs)).masked_fill(zl < cutoff, float("-inf"))
                tok, ref = int(fused.argmax()), int(zs.argmax())
            elif method == "ProxyFineTuning":
                a = 1.0 if alpha is None else alpha
                z_b = _last(small, ids)[:v]
                tok, ref = int((z_l[:v] + a * (z_s[:v] - z_b)).argmax()), int(z_b.argmax())
            else:
                raise ValueError(method)
            flags.append(int(tok != ref))
            mismatch += int(tok != ref)
        else:
            tok = int(z_s.argmax())
        ids.append(tok)
        out.append(tok)
        if tok == eos:
            break
    return dict(tokens=out, total=len(out), latent=latent, mismatch=mismatch, if_match_now=flags,
                slm_top=slm_top, llm_top=llm_top)
