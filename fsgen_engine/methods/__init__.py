"""Collaboration methods: each is a small policy over the step primitives of ``fsgen_engine.runtime``.

======================  ===========================================================
``large`` / ``small``   baselines (methods/baseline.py)
``oracle``              router-gated large-model tokens (methods/routed.py)
``contrastive``         router-gated fused tokens, presets fsgen / obrien / weights
``proxy``               proxy tuning; System 1 = the small fine-tuned model
``speculative``         draft K, verify K+1 (greedy / lossless sampling, adaptive K,
                        fused targets) (methods/speculative.py)
``bild``                Big-Little Decoder: fallback + rollback (methods/bild.py)
======================  ===========================================================
"""
from __future__ import annotations

METHODS = ("large", "small", "oracle", "contrastive", "proxy", "speculative", "bild")


def make_method(cfg, runner, sampler):
    """Instantiate the policy for ``cfg.method`` (a validated ``MethodConfig``)."""
    if cfg.method == "large":
        from fsgen_engine.methods.baseline import LargeOnly as cls
    elif cfg.method == "small":
        from fsgen_engine.methods.baseline import SmallOnly as cls
    elif cfg.method in ("oracle", "contrastive", "proxy"):
        from fsgen_engine.methods.routed import Routed as cls
    elif cfg.method == "speculative":
        from fsgen_engine.methods.speculative import Speculative as cls
    elif cfg.method == "bild":
        from fsgen_engine.methods.bild import BiLD as cls
    else:
        raise ValueError(f"method={cfg.method!r} is not a method; use one of {', '.join(METHODS)}")
    return cls(cfg, runner, sampler)


def models_needed(method: str, target: str | None = None) -> tuple[str, ...]:
    if method == "large":
        return ("large",)
    if method == "small":
        return ("small",)
    if method == "proxy" or (method == "speculative" and target == "proxy"):
        return ("small_ft", "large", "small")
    return ("small", "large")


__all__ = ["METHODS", "make_method", "models_needed"]
