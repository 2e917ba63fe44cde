"""Fit a learned router (FS-GEN's SVM router) from per-token traces.

Label: at each step where System 2 ran (``routed`` and ``large_argmax >= 0``),
``mismatch = large_argmax != small_argmax``: the steps System 2 is needed for. Features: see
:mod:`fsgen_engine.router_features` (the trace's entropy / max prob / margin / 2nd prob by default).
As in the research code, negatives are down-sampled 1:1 to the positives (seeded), then an RBF SVM
(``SVC(probability=True)``) or a logistic regression is fitted behind a ``StandardScaler``.

The saved artifact is data only: the fitted parameters as JSON (:mod:`fsgen_engine.router_format`,
format ``fsgen-router/2``), with the feature spec (e.g. "stats4"), ``threshold`` and ``metadata``
(n_train, n_pos, n_neg, sources, seed, ...). A router fires when its mismatch probability (what
``pipeline.predict_proba(X)[:, 1]`` gives) is >= ``threshold``. The bundle :func:`train_router`
returns also keeps the scikit-learn ``pipeline``.
"""
from __future__ import annotations

import math
import warnings
from typing import Iterable, Sequence

import numpy as np

from fsgen_engine.router_features import (FEATURES_STATS, STATS_FEATURE_NAMES, TOPK_COLUMN, features_for_spec,
                                          parse_spec)

from fsgen_engine.router_format import FORMAT, load_router, predict_fire, predict_mismatch_proba  # noqa: F401
from fsgen_engine.router_format import save_router as _save_json
from fsgen_engine.router_format import validate

KINDS = ("svm", "logistic")


def collect_examples(outputs: Iterable, spec: str = FEATURES_STATS) -> tuple[np.ndarray, np.ndarray]:
    """``GenerationOutput``s -> ``(X [N, F] float64, y [N] int64)`` over steps where System 2 ran.

    Steps whose statistics are NaN (System 1 did not run) are skipped."""
    kind, _ = parse_spec(spec)
    ent, p1, mar, topk, labels = [], [], [], [], []
    for out in outputs:
        c = out.trace.columns
        tk = c.get(TOPK_COLUMN)
        if kind == "topk" and tk is None:
            raise ValueError(f"feature spec {spec!r} needs a {TOPK_COLUMN!r} trace column, which these traces "
                             f"lack; use --top-k 0 (features {STATS_FEATURE_NAMES})")
        for i, (routed, la, sa) in enumerate(zip(c["routed"], c["large_argmax"], c["small_argmax"])):
            if not routed or la is None or la < 0 or sa is None or sa < 0:
                continue
            e, m, g = c["small_entropy"][i], c["small_max_prob"][i], c["small_margin"][i]
            if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (e, m, g)):
                continue
            ent.append(e), p1.append(m), mar.append(g), labels.append(int(la != sa))
            if tk is not None:
                topk.append(tk[i])
    if not labels:
        return np.zeros((0, 0)), np.zeros((0,), dtype=np.int64)
    x = features_for_spec(spec, entropy=ent, max_prob=p1, margin=mar, topk_probs=topk if topk else None)
    return x, np.asarray(labels, dtype=np.int64)


def balance(x: np.ndarray, y: np.ndarray, seed: int = 0, ratio: float = 1.0,
            max_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Keep every positive (capped at ``max_samples/2``) and ``ratio`` x as many negatives, seeded."""
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero(y == 1)
    neg = np.flatnonzero(y == 0)
    if max_samples is not None and len(pos) > max_samples // 2:
        pos = rng.choice(pos, size=max_samples // 2, replace=False)
    n_neg = min(len(neg), int(round(len(pos) * ratio)))
    neg = rng.choice(neg, size=n_neg, replace=False)
    idx = rng.permutation(np.concatenate([pos, neg]))
    return x[idx], y[idx]


def make_pipeline(kind: str = "svm", seed: int = 0):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if kind == "svm":
        try:
            clf = SVC(kernel="rbf", probability=True, random_state=seed)
        except TypeError:  # scikit-learn >= 1.11 removed probability=True in favour of calibration
            from sklearn.calibration import CalibratedClassifierCV

            clf = CalibratedClassifierCV(SVC(kernel="rbf", random_state=seed), ensemble=False)
    elif kind == "logistic":
        clf = LogisticRegression(max_iter=1000, random_state=seed)
    else:
        raise ValueError(f"kind={kind!r} is not a router kind: use one of {KINDS}")
    return Pipeline([("scale", StandardScaler()), ("clf", clf)])


def train_router(x: np.ndarray, y: np.ndarray, *, kind: str = "svm", spec: str = FEATURES_STATS, seed: int = 0,
                 ratio: float = 1.0, max_samples: int | None = 20000, threshold: float = 0.5,
                 metadata: dict | None = None) -> dict:
    """Fit a router on ``x [N, F]``, ``y [N]`` (1 = mismatch); returns the artifact dict."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"need both mismatch and match steps to train a router, got {n_pos} mismatches and "
                         f"{n_neg} matches; generate traces with --router always (every step routed)")
    xb, yb = balance(x, y, seed=seed, ratio=ratio, max_samples=max_samples)
    pipe = make_pipeline(kind, seed)
    with warnings.catch_warnings():  # scikit-learn 1.9 deprecates SVC(probability=True); it still works
        warnings.filterwarnings("ignore", message=".*probability.*", category=FutureWarning)
        pipe.fit(xb, yb)
    kind_name, k = parse_spec(spec)
    names = list(STATS_FEATURE_NAMES) if kind_name == FEATURES_STATS else [f"p{i + 1}" for i in range(k)] + ["entropy"]
    meta = {"n_steps": int(len(y)), "n_pos": n_pos, "n_neg": n_neg, "n_train": int(len(yb)), "seed": seed,
            "neg_ratio": ratio}
    meta.update(metadata or {})
    data = {"format": FORMAT, "kind": kind, "features": spec, "feature_names": names,
            "threshold": float(threshold), "metadata": meta, "model": export_model(pipe)}
    bundle = validate(data, "<trained router>")
    bundle["pipeline"] = pipe
    return bundle


def export_model(pipe) -> dict:
    """The fitted parameters of a (StandardScaler +) SVC(rbf) / CalibratedClassifierCV(SVC) /
    LogisticRegression pipeline as plain data (the ``model`` entry of a router file)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    steps = list(pipe.named_steps.values()) if hasattr(pipe, "named_steps") else [pipe]
    clf = steps[-1]
    scaler = None
    for st in steps[:-1]:
        if not isinstance(st, StandardScaler):
            raise ValueError(f"cannot export pipeline step {type(st).__name__}: only StandardScaler is supported")
        scaler = {"mean": st.mean_.tolist() if st.with_mean else [0.0] * st.n_features_in_,
                  "scale": st.scale_.tolist() if st.with_std else [1.0] * st.n_features_in_}
    if list(getattr(clf, "classes_", [])) != [0, 1]:
        raise ValueError(f"a router classifier must have classes [0, 1], got {getattr(clf, 'classes_', None)}")

    def svm_params(svc):
        if svc.kernel != "rbf":
            raise ValueError(f"cannot export an SVC with kernel={svc.kernel!r}: only 'rbf' is supported")
        return {"type": "svm_rbf", "gamma": float(svc._gamma), "support_vectors": svc.support_vectors_.tolist(),
                "dual_coef": svc.dual_coef_[0].tolist(), "intercept": float(svc.intercept_[0])}

    if isinstance(clf, LogisticRegression):
        c = {"type": "logistic", "coef": clf.coef_[0].tolist(), "intercept": float(clf.intercept_[0])}
    elif isinstance(clf, SVC):
        with warnings.catch_warnings():  # probA_/probB_ are deprecated along with probability=True
            warnings.simplefilter("ignore", FutureWarning)
            if not getattr(clf, "probability", False):
                raise ValueError("cannot export an SVC without probability=True")
            c = dict(svm_params(clf), probability={"method": "libsvm_platt", "a": float(clf.probA_[0]),
                                                   "b": float(clf.probB_[0])})
    elif isinstance(clf, CalibratedClassifierCV):
        if clf.method != "sigmoid" or len(clf.calibrated_classifiers_) != 1:
            raise ValueError("cannot export a CalibratedClassifierCV other than method='sigmoid', ensemble=False")
        cc = clf.calibrated_classifiers_[0]
        if not isinstance(cc.estimator, SVC):
            raise ValueError(f"cannot export a calibrated {type(cc.estimator).__name__}: only SVC")
        cal = cc.calibrators[0]
        c = dict(svm_params(cc.estimator), probability={"method": "sigmoid", "a": float(cal.a_), "b": float(cal.b_)})
    else:
        raise ValueError(f"cannot export a {type(clf).__name__} router: supported are SVC(rbf, probability=True), "
                         "CalibratedClassifierCV(SVC, sigmoid) and LogisticRegression")
    return {"scaler": scaler, "classifier": c}


def train_router_from_traces(paths: Sequence[str], *, kind: str = "svm", top_k: int = 0, seed: int = 0,
                             ratio: float = 1.0, max_samples: int | None = 20000, threshold: float = 0.5) -> dict:
    """Read trace files (``fsgen generate/eval --out``) and fit a router on them."""
    from fsgen_engine.outputs import read_traces

    spec = f"topk:{top_k}" if top_k and top_k > 0 else FEATURES_STATS
    outputs = []
    for p in paths:
        outputs.extend(read_traces(p))
    x, y = collect_examples(outputs, spec)
    if len(y) == 0:
        raise ValueError(f"no routed steps with a large-model argmax in {list(paths)}: traces need steps where "
                         "System 2 ran (routed=True, large_argmax >= 0)")
    return train_router(x, y, kind=kind, spec=spec, seed=seed, ratio=ratio, max_samples=max_samples,
                        threshold=threshold, metadata={"sources": [str(p) for p in paths],
                                                       "n_generations": len(outputs)})


def save_router(bundle: dict, path: str) -> None:
    """Write a router as JSON (data only). A bundle without ``model`` (an old pickled one loaded with
    ``allow_pickle=True``) is exported from its scikit-learn ``pipeline`` first."""
    if "model" not in bundle:
        bundle = dict(bundle, format=FORMAT, model=export_model(bundle["pipeline"]))
        bundle.setdefault("kind", "svm")
        if bundle["features"].startswith("topk_only:"):
            raise ValueError("the research code's bare SVM (features = top-k probabilities without entropy) has no "
                             "JSON form; re-train with `fsgen train-router`")
    _save_json(bundle, path)
