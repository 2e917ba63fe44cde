"""Router files carry data only: a pickled router never runs (its code would run on load), corrupt
files fail with an error naming the file, and the JSON form predicts exactly what the fitted
scikit-learn pipeline predicts."""
import json
import os
import random
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

from fsgen_engine.router_format import RouterFileError, load_router, predict_mismatch_proba
from fsgen_engine.routers import parse_router


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _data(seed=0, n=300):
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.uniform(0, 3, n), rng.uniform(0.05, 1, n), rng.uniform(0, 1, n), rng.uniform(0, .5, n)])
    y = (x[:, 1] + 0.3 * rng.normal(size=n) < 0.5).astype(int)
    return x, y


def test_malicious_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    for name, dump in (("evil.joblib", None), ("evil.pkl", pickle.dumps), ("evil.json", pickle.dumps)):
        path = tmp_path / name
        if dump is None:
            import joblib

            joblib.dump(_Evil(str(marker)), path)
        else:
            path.write_bytes(dump(_Evil(str(marker))))
        with pytest.raises(ValueError, match=str(path).replace(".", r"\.")) as e:
            parse_router(f"learned:{path}")
        assert "pickle" in str(e.value) and "--convert" in str(e.value)
        assert not marker.exists(), "the router file's code ran"


# fixed bytes: parameters drawn at collection time would differ between pytest-xdist workers
@pytest.mark.parametrize("content", [random.Random(1).randbytes(64), b"{\"format\": \"fsgen-router/2\", \"kind\"",
                                     b"\x80\x04\x95" + random.Random(2).randbytes(40), b"[1, 2, 3]", b"{}", b""],
                         ids=["random-bytes", "truncated-json", "pickle-garbage", "json-list", "empty-object", "empty"])
def test_corrupt_router_file_names_the_file(tmp_path, content):
    path = tmp_path / "router.json"
    path.write_bytes(content)
    with pytest.raises(ValueError) as e:
        parse_router(f"learned:{path}")
    assert str(path) in str(e.value)


def test_corrupt_pickle_with_opt_in_names_the_file(tmp_path):
    path = tmp_path / "old.joblib"
    path.write_bytes(b"\x80\x04\x95" + os.urandom(200))
    with pytest.warns(UserWarning, match="pickle"), pytest.raises(RouterFileError, match=str(path)):
        load_router(str(path), allow_pickle=True)


@pytest.mark.parametrize("key,value,match", [
    ("threshold", "high", "threshold"),
    ("features", "nope:3", "features"),
    ("format", "fsgen-router/1", "format"),
    ("model", {"scaler": None, "classifier": {"type": "logistic", "coef": [1.0, 2.0], "intercept": 0.0}}, "coef"),
    ("model", {"scaler": None, "classifier": {"type": "logistic", "coef": [1, 2, 3, float("nan")],
                                              "intercept": 0.0}}, "NaN"),
    ("model", {"scaler": None, "classifier": {"type": "tree"}}, "classifier.type"),
])
def test_invalid_json_router_names_file_and_key(tmp_path, key, value, match):
    from fsgen_engine.router_training import train_router

    x, y = _data()
    bundle = train_router(x, y, kind="logistic")
    from fsgen_engine.router_format import to_json

    data = to_json(bundle)
    data[key] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RouterFileError, match=match) as e:
        load_router(str(path))
    assert str(path) in str(e.value)


@pytest.mark.parametrize("kind", ["svm", "logistic"])
def test_json_router_predicts_what_sklearn_predicts(tmp_path, kind):
    from fsgen_engine.router_training import save_router, train_router

    x, y = _data(1)
    bundle = train_router(x, y, kind=kind, seed=2)
    path = tmp_path / "r.json"
    save_router(bundle, str(path))
    loaded = load_router(str(path))
    assert "pipeline" not in loaded and loaded["kind"] == kind
    xt, _ = _data(7, 500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ref = bundle["pipeline"].predict_proba(xt)[:, 1]
    np.testing.assert_allclose(predict_mismatch_proba(loaded, xt), ref, rtol=0, atol=1e-9)


def test_calibrated_svm_exports(tmp_path):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from fsgen_engine.router_training import export_model, save_router

    x, y = _data(3)
    pipe = Pipeline([("scale", StandardScaler()),
                     ("clf", CalibratedClassifierCV(SVC(kernel="rbf", random_state=0), ensemble=False))]).fit(x, y)
    path = tmp_path / "r.json"
    save_router({"format": "fsgen-router/2", "kind": "svm", "features": "stats4", "threshold": 0.5,
                 "model": export_model(pipe)}, str(path))
    xt, _ = _data(8, 400)
    np.testing.assert_allclose(predict_mismatch_proba(load_router(str(path)), xt), pipe.predict_proba(xt)[:, 1],
                               rtol=0, atol=1e-12)


def test_old_pickle_only_on_opt_in_and_convertible(tmp_path, capsys):
    import joblib

    from fsgen_engine.cli import main
    from fsgen_engine.router_training import train_router

    x, y = _data(4)
    bundle = train_router(x, y, kind="logistic")
    old = tmp_path / "old.joblib"
    joblib.dump({"format": "fsgen-router/1", "kind": "logistic", "pipeline": bundle["pipeline"],
                 "features": "stats4", "threshold": 0.5, "metadata": {}}, old)
    with pytest.raises(RouterFileError, match="refused"):
        load_router(str(old))
    with pytest.warns(UserWarning, match="runs any code"):
        r = parse_router(f"learned:{old}", allow_pickle=True)
    assert r.static is None
    new = tmp_path / "new.json"
    assert main(["train-router", "--convert", str(old), "--out", str(new)]) == 0
    np.testing.assert_allclose(predict_mismatch_proba(load_router(str(new)), x),
                               bundle["pipeline"].predict_proba(x)[:, 1], atol=1e-12)


def test_routers_do_not_import_training_code(tmp_path):
    from fsgen_engine.router_training import save_router, train_router

    x, y = _data(5)
    path = tmp_path / "r.json"
    save_router(train_router(x, y, kind="svm"), str(path))
    code = ("import sys, torch\nfrom fsgen_engine.routers import parse_router\n"
            f"r = parse_router('learned:{path}')\n"
            "from fsgen_engine.ops import token_stats\n"
            "z = torch.randn(3, 50)\nfire = r(z, token_stats(z))\nassert fire.shape == (3,)\n"
            "bad = [m for m in sys.modules if m.startswith(('sklearn', 'joblib', 'fsgen_engine.router_training'))]\n"
            "assert not bad, bad\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
