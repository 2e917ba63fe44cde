"""``fsgen train-router``: learns mismatch-vs-match from synthetic traces where mismatches sit at flat
System-1 distributions, and the saved router predicts held-out steps better than chance."""
import numpy as np
import pytest

from fsgen_engine.cli import main
from fsgen_engine.outputs import GenerationOutput, GenerationStats, Trace, TraceStep, write_traces


def _synthetic_outputs(n_gen: int, n_steps: int, seed: int, routed_frac: float = 1.0):
    rng = np.random.default_rng(seed)
    outs = []
    for g in range(n_gen):
        tr = Trace()
        for i in range(n_steps):
            max_prob = float(rng.uniform(0.05, 1.0))
            second = float(rng.uniform(0.0, min(max_prob, 1.0 - max_prob)))
            entropy = float(-max_prob * np.log(max_prob) + rng.uniform(0, 2) * (1 - max_prob))
            mismatch = rng.random() < 0.9 * (1.0 - max_prob) ** 2  # flat -> System 2 disagrees
            routed = bool(rng.random() < routed_frac)
            small = int(rng.integers(0, 100))
            large = (small + 1 if mismatch else small) if routed else -1
            tr.append(TraceStep(position=i, small_entropy=entropy, small_max_prob=max_prob,
                                small_margin=max_prob - second, routed=routed, token=large if routed else small,
                                small_argmax=small, large_argmax=large, source="large" if routed else "small"))
        outs.append(GenerationOutput(token_ids=list(tr.columns["token"]), text="", finish_reason="length",
                                     stats=GenerationStats(total_tokens=n_steps), trace=tr, method="oracle",
                                     router="always"))
    return outs


def _auc(scores, labels):
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(labels, scores)


@pytest.mark.parametrize("kind", ["svm", "logistic"])
def test_train_router_cli_learns_mismatch(tmp_path, kind, capsys):
    from fsgen_engine.router_training import collect_examples, load_router, predict_fire, predict_mismatch_proba

    train = tmp_path / "train.jsonl"
    write_traces(train, _synthetic_outputs(8, 150, seed=1, routed_frac=0.9))
    out = tmp_path / "router.json"
    assert main(["train-router", str(train), "--out", str(out), "--kind", kind, "--seed", "3"]) == 0
    assert "trained" in capsys.readouterr().out

    bundle = load_router(str(out))
    assert bundle["kind"] == kind and bundle["features"] == "stats4" and bundle["threshold"] == 0.5
    assert bundle["metadata"]["n_train"] == 2 * bundle["metadata"]["n_pos"]  # 1:1 down-sampling

    x, y = collect_examples(_synthetic_outputs(4, 200, seed=2))
    assert 0 < y.sum() < len(y)
    p = predict_mismatch_proba(bundle, x)
    assert _auc(p, y) > 0.8
    assert predict_fire(bundle, x).dtype == bool


def test_collect_examples_uses_routed_steps_only():
    from fsgen_engine.router_training import collect_examples

    outs = _synthetic_outputs(2, 50, seed=5, routed_frac=0.5)
    x, y = collect_examples(outs)
    cols = [o.trace.columns for o in outs]
    routed = [(c["large_argmax"][i], c["small_argmax"][i], c["small_max_prob"][i], c["small_margin"][i])
              for c in cols for i in range(len(c["routed"])) if c["routed"][i]]
    assert x.shape == (len(routed), 4)
    np.testing.assert_array_equal(y, [int(la != sa) for la, sa, _, _ in routed])
    np.testing.assert_allclose(x[:, 1], [r[2] for r in routed])
    np.testing.assert_allclose(x[:, 3], [r[2] - r[3] for r in routed])


def test_train_router_errors(tmp_path, capsys):
    path = tmp_path / "never.jsonl"
    write_traces(path, _synthetic_outputs(1, 20, seed=0, routed_frac=0.0))
    assert main(["train-router", str(path), "--out", str(tmp_path / "r.json")]) == 2
    assert "no routed steps" in capsys.readouterr().err
