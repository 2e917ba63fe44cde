"""Straightforward per-token reference loops over HF models (full recompute each step)."""
from __future__ import annotations

import math

import torch


@torch.no_grad()
def last_logits(m, ids):
    return m(torch.tensor([ids])).logits[0, -1].float()


def fire_of(router, z):
    p = torch.softmax(z.double(), -1)
    top = torch.topk(p, 2).values
    if router == "always":
        return True
    if router == "never":
        return False
    name, t = router.split(":")
    t = float(t)
    if name == "max_prob":
        return bool(top[0] < t)
    if name == "margin":
        return bool(top[0] - top[1] < t)
    ent = -(p * torch.log(p.clamp_min(1e-300))).sum()
    return bool(ent > t)


def fuse(method, zl, zs, zft=None, alpha=None, beta=None):
    if method == "oracle":
        return zl
    if method == "proxy":
        return zl + (1.0 if alpha is None else alpha) * (zft - zs)
    alpha = 0.1 if alpha is None else alpha
    beta = 0.5 if beta is None else beta
    f = zs + beta * (zl - zs) if method == "contrastive" else (1 + beta) * zl - beta * zs
    keep = zl >= math.log(alpha) + zl.max()
    return torch.where(keep, f, torch.full_like(f, float("-inf")))


def routed_loop(models, prompt, n, method, router="always", alpha=None, beta=None, preset="fsgen",
                mismatch_reference="small"):
    ids = list(prompt)
    calls = mism = 0
    proxy = method == "proxy"
    for _ in range(n):
        z1 = last_logits(models["small_ft" if proxy else "small"], ids)
        if fire_of(router, z1):
            zl = last_logits(models["large"], ids)
            zs = last_logits(models["small"], ids) if proxy else z1
            kind = "contrastive_obrien" if (method == "contrastive" and preset == "obrien") else method
            t = int(fuse(kind, zl, zs, z1 if proxy else None, alpha, beta).argmax())
            ref = int(zs.argmax()) if (proxy and mismatch_reference == "small") else int(z1.argmax())
            calls += 1
            mism += int(t != ref)
        else:
            t = int(z1.argmax())
        ids.append(t)
    return ids[len(prompt):], calls, mism


def bild_loop(models, prompt, n, fallback=0.6, rollback=5.0, max_small=10):
    ids = list(prompt)
    checked, run, calls, mism = len(prompt), 0, 0, 0
    while len(ids) - len(prompt) < n:
        zs = last_logits(models["small"], ids)
        if not (torch.softmax(zs.double(), -1).max() < fallback or run >= max_small):
            ids.append(int(zs.argmax()))
            run += 1
            continue
        calls += 1
        run = 0
        with torch.no_grad():
            zl = models["large"](torch.tensor([ids])).logits[0].float()
        for i in range(checked, len(ids)):
            if -torch.log_softmax(zl[i - 1], -1)[ids[i]] > rollback:
                ids = ids[:i] + [int(zl[i - 1].argmax())]
                checked = i + 1
                mism += 1
                break
        else:
            t = int(zl[-1].argmax())
            mism += int(t != int(zs.argmax()))
            ids.append(t)
            checked = len(ids)
    return ids[len(prompt):], calls, mism
