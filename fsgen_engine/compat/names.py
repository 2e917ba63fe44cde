"""The research code's method / router names and parameters -> the engine's.

Research methods (``collabrate_method``): a dict ``{"method": name, **params}`` or a bare name.
``OracleDecoding`` (the research default is spelled ``OrcleDecoding``; any name it does not know
falls back to oracle decoding, as there), ``ContrastiveDecoding`` (alpha 0.1, beta 0.5, FS-GEN
interpolation preset), ``SpeculativeDecoding`` (K 5), ``ProxyFineTuning`` (alpha 1.0).

Research routers (``router_method``): ``normal`` -> always, ``none`` -> never, ``threshold``
(0.5) -> ``max_prob:t``, ``delta_threshold`` (stored 0.2) -> ``margin:2t`` (the research router fires
when ``(p1 - p2) / 2 < t``), ``svm`` -> ``learned:PATH`` (``trained_model_path``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fsgen_engine.records import ENGINE_TO_RESEARCH_METHOD, research_method_info  # noqa: F401 (re-exported)

METHODS = {v: k for k, v in ENGINE_TO_RESEARCH_METHOD.items()}   # research name -> engine method
METHOD_DEFAULTS = {"contrastive": {"alpha": 0.1, "beta": 0.5}, "speculative": {"K": 5}, "proxy": {"alpha": 1.0}}
ROUTER_DEFAULTS = {"threshold": 0.5, "delta_threshold": 0.2}


@dataclass
class MethodSpec:
    research: str            # research name (as given, or OracleDecoding for the fallback)
    method: str              # engine method
    kwargs: dict = field(default_factory=dict)  # engine generate() keywords (alpha, beta, preset, num_draft_tokens)


def _as_dict(value, what: str) -> dict:
    if value is None:
        return {}
    if isinstance(value, str):
        return {"method": value}
    if isinstance(value, dict):
        return dict(value)
    raise ValueError(f"{what}={value!r} must be a dict like {{'method': 'OracleDecoding'}} or a method name")


def parse_method(collabrate_method) -> MethodSpec:
    d = _as_dict(collabrate_method, "collabrate_method")
    name = d.get("method", "OracleDecoding")
    method = METHODS.get(name, "oracle")  # the research code decodes any other name as oracle
    p = {**METHOD_DEFAULTS.get(method, {}), **{k: v for k, v in d.items() if k != "method"}}
    if method == "contrastive":
        kw = {"alpha": float(p["alpha"]), "beta": float(p["beta"]), "preset": "fsgen"}
    elif method == "proxy":
        kw = {"alpha": float(p["alpha"])}
    elif method == "speculative":
        kw = {"num_draft_tokens": int(p["K"])}
    else:
        kw = {}
    return MethodSpec(research=name if name in METHODS else "OracleDecoding", method=method, kwargs=kw)


def parse_router(router_method) -> tuple[str, str]:
    """-> ``(research name, engine router string)``."""
    d = _as_dict(router_method, "router_method")
    name = d.get("method", "normal")
    if name == "normal":
        return name, "always"
    if name == "none":
        return name, "never"
    if name == "threshold":
        return name, f"max_prob:{float(d.get('threshold', ROUTER_DEFAULTS['threshold']))!r}"
    if name == "delta_threshold":
        return name, f"margin:{2.0 * float(d.get('threshold', ROUTER_DEFAULTS['delta_threshold']))!r}"
    if name == "svm":
        path = d.get("trained_model_path")
        if not path:
            raise ValueError("router_method 'svm' needs 'trained_model_path' (a router saved by fsgen train-router)")
        return name, f"learned:{path}"
    raise ValueError(f"router_method {name!r} is not known: use normal, none, threshold, delta_threshold or svm")
