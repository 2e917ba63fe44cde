"""Routers: decide per row whether System 2 (the large model) is called for the current token.

Every router reads System 1's last-position logits ``[B, V]`` and the one-pass statistics of
``ops.token_stats`` on them (computed once per step, shared by all routers), and returns a ``[B]``
bool tensor on the logits' device (True = call the large model). ``always`` / ``never`` are *static*
(``Router.static`` is True / False): the engine then knows the decision without reading the device.

Names (``parse_router``)::

    always | never | max_prob:T | margin:T | entropy:T | learned:PATH
    aliases from the research code: normal = always, none = never,
    threshold = max_prob:0.5, delta_threshold = margin:0.4

``max_prob:T`` fires when ``max p < T``; ``margin:T`` when ``p1 - p2 < T``; ``entropy:T`` when
``H > T`` nats; ``learned:PATH`` loads a classifier written by ``fsgen train-router`` (a data-only
JSON file, :mod:`fsgen_engine.router_format`; never a pickle unless ``allow_pickle=True``) and fires
when its mismatch probability >= its threshold. Loading a router never imports the training code.
"""
from __future__ import annotations

import math
import os

import torch

ROUTER_NAMES = ("always", "never", "max_prob:T", "margin:T", "entropy:T", "learned:PATH")
ALIASES = {"normal": "always", "none": "never", "threshold": "max_prob:0.5", "delta_threshold": "margin:0.4"}


def _valid_list() -> str:
    return (", ".join(ROUTER_NAMES) + " (aliases: " + ", ".join(f"{k}={v}" for k, v in ALIASES.items()) + ")")


class Router:
    """Base class. ``static``: True/False when the decision never depends on the logits, else None."""

    name = "router"
    static: bool | None = None

    def __call__(self, logits: torch.Tensor, stats) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"Router({self.name})"


class StaticRouter(Router):
    def __init__(self, fire: bool):
        self.static = bool(fire)
        self.name = "always" if fire else "never"

    def __call__(self, logits, stats):
        return torch.full((logits.shape[0],), self.static, dtype=torch.bool, device=logits.device)


class ThresholdRouter(Router):
    """Fires when ``stat < t`` (max_prob, margin) or ``stat > t`` (entropy). NaN statistics
    (a degenerate row) fire: System 2 is the safe choice."""

    def __init__(self, kind: str, threshold: float):
        self.kind, self.threshold = kind, float(threshold)
        self.name = f"{kind}:{threshold:g}"

    def __call__(self, logits, stats):
        if self.kind == "max_prob":
            v, below = stats.max_prob, True
        elif self.kind == "margin":
            v, below = stats.margin, True
        else:
            v, below = stats.entropy, False
        fire = (v < self.threshold) if below else (v > self.threshold)
        return fire | torch.isnan(v)


def router_features(logits: torch.Tensor, stats=None, k: int = 10) -> torch.Tensor:
    """FS-GEN learned-router features: System 1's sorted (descending) top-``k`` probabilities followed
    by its entropy (nats): ``[B, k + 1]`` float32 on the logits' device. Rows with fewer than ``k``
    vocabulary entries are zero-padded. ``stats`` (an ``ops.TokenStats``) supplies the entropy when given.
    Matches the ``topk:K`` spec of :mod:`fsgen_engine.router_features`."""
    if k <= 0:
        raise ValueError(f"router_features: k={k} must be >= 1")
    x = logits.float()
    p = torch.softmax(x, dim=-1)
    kk = min(k, p.shape[-1])
    top = torch.topk(p, kk, dim=-1).values
    if kk < k:
        top = torch.nn.functional.pad(top, (0, k - kk))
    if stats is not None:
        ent = stats.entropy.float()
    else:
        logp = torch.log_softmax(x, dim=-1)
        ent = -(torch.where(p > 0, p * logp, torch.zeros_like(p))).sum(-1)
    return torch.cat([top, ent[:, None]], dim=1)


class LearnedRouter(Router):
    """A classifier saved by ``fsgen train-router``: its fitted parameters, feature spec and
    ``threshold`` as JSON (see :mod:`fsgen_engine.router_format`). Old pickled routers (joblib, the
    research code's ``.pkl``) are refused unless ``allow_pickle=True`` (they can run code; warns).
    Reading its decision needs the features on the host: one sync per step."""

    def __init__(self, path: str, *, allow_pickle: bool = False):
        if not os.path.exists(path):
            raise ValueError(f"router 'learned:{path}': file not found; train one with `fsgen train-router`")
        from fsgen_engine.router_format import load_router

        self.path = path
        self.bundle = load_router(path, allow_pickle=allow_pickle)
        self.name = f"learned:{path}"

    def __call__(self, logits, stats):
        import numpy as np

        from fsgen_engine.router_format import predict_fire

        spec = self.bundle.get("features", "stats4")
        if spec.startswith("topk_only:"):
            k = int(spec.split(":", 1)[1])
            x = router_features(logits, stats, k)[:, :k].double().cpu().numpy()
        else:
            from fsgen_engine.router_features import features_from_logits

            x = features_from_logits(logits, spec)
        fire = np.asarray(predict_fire(self.bundle, x), dtype=bool)
        return torch.from_numpy(fire).to(logits.device)


def parse_router(spec, *, allow_pickle: bool = False) -> Router:
    """``"max_prob:0.5"`` etc. -> a :class:`Router` (a Router instance passes through).
    ``allow_pickle``: let ``learned:PATH`` read an old pickled router (runs the file's code; warns).

    Raises ValueError naming the valid routers for an unknown name or a bad threshold, and naming the
    file for a router file that is missing, corrupt or not data-only."""
    if isinstance(spec, Router):
        return spec
    if spec is None:
        spec = "always"
    if not isinstance(spec, str):
        raise ValueError(f"router={spec!r} must be a string; valid routers: {_valid_list()}")
    text = ALIASES.get(spec.strip(), spec.strip())
    name, sep, arg = text.partition(":")
    name = name.strip().lower()
    if name in ("always", "never"):
        if sep:
            raise ValueError(f"router={spec!r}: {name!r} takes no threshold; valid routers: {_valid_list()}")
        return StaticRouter(name == "always")
    if name in ("max_prob", "margin", "entropy"):
        try:
            t = float(arg)
        except ValueError:
            raise ValueError(f"router={spec!r}: {name} needs a numeric threshold, e.g. '{name}:0.5'; "
                             f"valid routers: {_valid_list()}") from None
        if not math.isfinite(t):
            raise ValueError(f"router={spec!r}: threshold {arg!r} must be finite")
        if name in ("max_prob", "margin") and not 0.0 <= t <= 1.0:
            raise ValueError(f"router={spec!r}: a {name} threshold is a probability and must be in [0, 1], got {t}")
        if name == "entropy" and t < 0:
            raise ValueError(f"router={spec!r}: an entropy threshold (nats) must be >= 0, got {t}")
        return ThresholdRouter(name, t)
    if name == "learned" or name == "svm":
        if not arg:
            raise ValueError(f"router={spec!r}: give the classifier file, e.g. 'learned:router.json'")
        return LearnedRouter(arg, allow_pickle=allow_pickle)
    raise ValueError(f"router={spec!r} is not a router; valid routers: {_valid_list()}")
