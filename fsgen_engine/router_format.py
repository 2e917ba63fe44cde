"""Learned-router files: data only (JSON), read and evaluated with numpy, no code execution.

A router file written by ``fsgen train-router`` is one JSON object::

    {"format": "fsgen-router/2", "kind": "svm" | "logistic", "features": "stats4" | "topk:K",
     "feature_names": [...], "threshold": 0.5, "metadata": {...},
     "model": {"scaler": {"mean": [F], "scale": [F]} | null,
               "classifier": {"type": "logistic", "coef": [F], "intercept": b}
                           | {"type": "svm_rbf", "gamma": g, "support_vectors": [[F] x S],
                              "dual_coef": [S], "intercept": b,
                              "probability": {"method": "libsvm_platt", "a": A, "b": B}
                                           | {"method": "sigmoid", "a": A, "b": B}}}}

It holds the fitted parameters of the scikit-learn pipeline (StandardScaler + SVC / LogisticRegression),
and :func:`predict_mismatch_proba` reproduces ``pipeline.predict_proba(X)[:, 1]`` from them (libsvm's
Platt scaling and its two-class probability coupling included). Nothing in such a file can run code.

Old routers (``fsgen-router/1``: a joblib pickle, or the research code's bare sklearn ``.pkl``) run
arbitrary code when loaded, so :func:`load_router` refuses them unless ``allow_pickle=True`` (with a
warning); ``fsgen train-router --convert OLD --out NEW.json`` rewrites a trusted old file as JSON.
This module must not import the training code (scikit-learn is needed only for old pickles).
"""
from __future__ import annotations

import json
import math
import os
import warnings

import numpy as np

FORMAT = "fsgen-router/2"
LEGACY_FORMAT = "fsgen-router/1"
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"ZF")  # pickle, zip, gz, bz2, xz, zlib


class RouterFileError(ValueError):
    """A router file that is not a valid data-only router; the message names the file."""


def _fail(path, what: str):
    raise RouterFileError(f"router file {path}: {what}")


def _array(path, obj, key: str, ndim: int, length: int | None = None) -> np.ndarray:
    try:
        a = np.asarray(obj, dtype=np.float64)
    except (TypeError, ValueError):
        _fail(path, f"{key} must be a list of numbers")
    if a.ndim != ndim or (length is not None and a.shape[-1] != length) or a.size == 0:
        _fail(path, f"{key} has shape {list(a.shape)}, expected {ndim}-d" + (f" with {length} columns" if length else ""))
    if not np.isfinite(a).all():
        _fail(path, f"{key} holds NaN or infinite values")
    return a


def _number(path, obj, key: str) -> float:
    if isinstance(obj, bool) or not isinstance(obj, (int, float)) or not math.isfinite(obj):
        _fail(path, f"{key}={obj!r} must be a finite number")
    return float(obj)


def validate(bundle, path="<router>") -> dict:
    """Check a JSON router object and turn its lists into arrays; raises :class:`RouterFileError`."""
    if not isinstance(bundle, dict):
        _fail(path, f"expected a JSON object, got {type(bundle).__name__}")
    if bundle.get("format") != FORMAT:
        _fail(path, f"format={bundle.get('format')!r}, expected {FORMAT!r}")
    for key in ("kind", "features", "model"):
        if key not in bundle:
            _fail(path, f"missing key {key!r}")
    from fsgen_engine.router_features import parse_spec

    try:
        kind, k = parse_spec(bundle["features"])
        n_features = 4 if kind == "stats4" else k + 1
    except (ValueError, TypeError) as exc:
        _fail(path, f"features={bundle['features']!r}: {exc}")
    threshold = _number(path, bundle.get("threshold", 0.5), "threshold")
    model = bundle["model"]
    if not isinstance(model, dict) or not isinstance(model.get("classifier"), dict):
        _fail(path, "model must be an object with a 'classifier'")
    out = dict(bundle, threshold=threshold)
    scaler = model.get("scaler")
    sc = None
    if scaler is not None:
        if not isinstance(scaler, dict):
            _fail(path, "model.scaler must be an object or null")
        sc = {"mean": _array(path, scaler.get("mean"), "model.scaler.mean", 1, n_features),
              "scale": _array(path, scaler.get("scale"), "model.scaler.scale", 1, n_features)}
        if (sc["scale"] == 0).any():
            _fail(path, "model.scaler.scale holds zeros")
    c = model["classifier"]
    typ = c.get("type")
    if typ == "logistic":
        clf = {"type": typ, "coef": _array(path, c.get("coef"), "model.classifier.coef", 1, n_features),
               "intercept": _number(path, c.get("intercept"), "model.classifier.intercept")}
    elif typ == "svm_rbf":
        sv = _array(path, c.get("support_vectors"), "model.classifier.support_vectors", 2, n_features)
        dual = _array(path, c.get("dual_coef"), "model.classifier.dual_coef", 1, sv.shape[0])
        prob = c.get("probability")
        if not isinstance(prob, dict) or prob.get("method") not in ("libsvm_platt", "sigmoid"):
            _fail(path, "model.classifier.probability must be {'method': 'libsvm_platt' | 'sigmoid', 'a', 'b'}")
        clf = {"type": typ, "support_vectors": sv, "dual_coef": dual,
               "gamma": _number(path, c.get("gamma"), "model.classifier.gamma"),
               "intercept": _number(path, c.get("intercept"), "model.classifier.intercept"),
               "probability": {"method": prob["method"], "a": _number(path, prob.get("a"), "probability.a"),
                               "b": _number(path, prob.get("b"), "probability.b")}}
    else:
        _fail(path, f"model.classifier.type={typ!r} is not 'logistic' or 'svm_rbf'")
    out["model"] = {"scaler": sc, "classifier": clf}
    out["n_features"] = n_features
    return out


def to_json(bundle: dict) -> dict:
    """The JSON-serialisable form of a validated or freshly exported bundle (arrays -> lists)."""
    def conv(v):
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, np.generic):
            return v.item()
        return v

    return {k: conv(v) for k, v in bundle.items() if k not in ("pipeline", "n_features")}


def save_router(bundle: dict, path: str) -> None:
    """Write a router (with a ``model`` entry, see the module docstring) as JSON."""
    data = to_json(bundle)
    validate(data, path)  # never write a file this module would refuse to read
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)


def load_router(path: str, *, allow_pickle: bool = False) -> dict:
    """Read a router file. JSON routers only, unless ``allow_pickle`` (old joblib/pickle files: they can
    run arbitrary code when loaded, so only for files you trust; warns). Raises :class:`RouterFileError`
    (a ValueError) naming the file for anything else, FileNotFoundError when it does not exist."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_PICKLE_MAGIC):
        if not allow_pickle:
            _fail(path, "is a pickle/joblib file (an old-format router or the research code's .pkl); loading one "
                        "can run arbitrary code, so it is refused. Re-train it with `fsgen train-router` (writes "
                        "JSON), or convert a file you trust with `fsgen train-router --convert "
                        f"{path} --out ROUTER.json`")
        return _load_pickle(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        _fail(path, f"not a JSON router file ({exc}); routers are written by `fsgen train-router`")
    return validate(data, path)


def _load_pickle(path: str) -> dict:
    warnings.warn(f"loading router {path} with pickle (allow_pickle=True): this runs any code the file holds; "
                  "only do this for files you trust, and convert it to JSON with `fsgen train-router --convert`",
                  UserWarning, stacklevel=3)
    import joblib

    try:
        obj = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - a corrupt pickle fails in many ways (KeyError, EOFError, ...)
        _fail(path, f"cannot be read as a joblib/pickle router: {type(exc).__name__}: {exc}")
    if isinstance(obj, dict) and "pipeline" in obj:
        bundle = dict(obj)
    elif hasattr(obj, "predict"):  # the research code's bare estimator, fitted on top-k probabilities
        n = int(getattr(obj, "n_features_in_", 10))
        bundle = {"format": "sklearn", "kind": type(obj).__name__, "pipeline": obj, "features": f"topk_only:{n}",
                  "feature_names": [f"p{i + 1}" for i in range(n)], "threshold": 0.5, "metadata": {}}
    else:
        _fail(path, "expected a dict with 'pipeline' or an sklearn estimator")
    bundle.setdefault("threshold", 0.5)
    bundle.setdefault("features", "stats4")
    return bundle


# ---- inference (numpy only) --------------------------------------------------------------------------

def _sigmoid_pair(dec, a, b):
    """libsvm's sigmoid_predict: 1 / (1 + exp(dec * a + b)), computed without overflow."""
    f = dec * a + b
    return np.where(f >= 0, np.exp(-np.abs(f)) / (1.0 + np.exp(-np.abs(f))), 1.0 / (1.0 + np.exp(-np.abs(f))))


def _libsvm_two_class(r01: np.ndarray) -> np.ndarray:
    """libsvm's multiclass_probability for two classes (its iterative coupling, reproduced step for step
    so probabilities match scikit-learn's ``SVC(probability=True)``); returns P(class 0) per row."""
    min_prob = 1e-7
    r01 = np.clip(r01, min_prob, 1 - min_prob)
    r10 = 1.0 - r01
    q00, q11 = r10 * r10, r01 * r01
    q01 = -r10 * r01
    p0 = np.full_like(r01, 0.5)
    p1 = np.full_like(r01, 0.5)
    active = np.ones(r01.shape, dtype=bool)
    eps = 0.005 / 2
    for _ in range(100):
        qp0 = q00 * p0 + q01 * p1
        qp1 = q01 * p0 + q11 * p1
        pqp = p0 * qp0 + p1 * qp1
        err = np.maximum(np.abs(qp0 - pqp), np.abs(qp1 - pqp))
        active &= ~(err < eps)
        if not active.any():
            break
        for t in (0, 1):
            qtt = q00 if t == 0 else q11
            qpt = qp0 if t == 0 else qp1
            diff = np.where(active, (-qpt + pqp) / qtt, 0.0)
            if t == 0:
                p0 = p0 + diff
            else:
                p1 = p1 + diff
            pqp = (pqp + diff * (diff * qtt + 2 * qpt)) / (1 + diff) / (1 + diff)
            qp0 = (qp0 + diff * (q00 if t == 0 else q01)) / (1 + diff)
            qp1 = (qp1 + diff * (q01 if t == 0 else q11)) / (1 + diff)
            p0, p1 = p0 / (1 + diff), p1 / (1 + diff)
    return p0


def predict_mismatch_proba(bundle: dict, x) -> np.ndarray:
    """Probability of a mismatch (System 2 needed) for feature rows ``x [N, F]`` -> ``[N]`` float64."""
    x = np.asarray(x, dtype=np.float64)
    if "model" not in bundle:  # an old pickled router loaded with allow_pickle=True
        pipe = bundle["pipeline"]
        if hasattr(pipe, "predict_proba"):
            try:
                return pipe.predict_proba(x)[:, 1]
            except AttributeError:  # SVC(probability=False) exposes predict_proba but raises
                pass
        return pipe.predict(x).astype(np.float64)
    model = bundle["model"]
    if x.ndim != 2 or x.shape[1] != bundle["n_features"]:
        raise ValueError(f"router features have shape {list(x.shape)}, the router expects [N, {bundle['n_features']}]")
    if model["scaler"] is not None:
        x = (x - model["scaler"]["mean"]) / model["scaler"]["scale"]
    c = model["classifier"]
    if c["type"] == "logistic":
        z = x @ c["coef"] + c["intercept"]
        return 1.0 / (1.0 + np.exp(-z))
    sv = c["support_vectors"]
    d2 = (x * x).sum(1)[:, None] - 2.0 * x @ sv.T + (sv * sv).sum(1)[None, :]
    dec = np.exp(-c["gamma"] * np.maximum(d2, 0.0)) @ c["dual_coef"] + c["intercept"]  # sklearn decision_function
    prob = c["probability"]
    if prob["method"] == "sigmoid":  # CalibratedClassifierCV(method="sigmoid") on the decision function
        return np.clip(_sigmoid_pair(dec, prob["a"], prob["b"]), 0.0, 1.0)
    # libsvm: decision values of the opposite sign, Platt scaling gives P(class 0), then coupling
    return 1.0 - _libsvm_two_class(_sigmoid_pair(-dec, prob["a"], prob["b"]))


def predict_fire(bundle: dict, x) -> np.ndarray:
    """Boolean ``[N]``: whether the router calls System 2."""
    return predict_mismatch_proba(bundle, x) >= bundle.get("threshold", 0.5)
