"""fsgen sweep --draft-stops: speculative decoding with plain K and each draft_stop rule joins the frontier."""
from fsgen_engine.eval.runner import EvalConfig
from fsgen_engine.eval.sweep import parse_routers, run_sweep
from tests.eval.test_runner import FakeEngine, _gsm_answer, gsm  # noqa: F401  (gsm: fixture)


def test_sweep_draft_stop_thresholds(gsm, tmp_path):  # noqa: F811
    eng = FakeEngine(_gsm_answer)
    rows = run_sweep(eng, EvalConfig("gsm8k", gsm, large="L", small="S", gen_kwargs={"num_draft_tokens": 6}),
                     [], [], str(tmp_path / "sw"), echo=False, draft_stops=parse_routers(["entropy:0.5,1.5"]))
    assert [(r["method"], r["router"], r.get("draft_stop")) for r in rows] == [
        ("large", "always", None), ("small", "never", None), ("speculative", "never", None),
        ("speculative", "entropy:0.5", "entropy:0.5"), ("speculative", "entropy:1.5", "entropy:1.5")]
    spec = [c for c in eng.calls if c["method"] == "speculative"]
    assert [c["options"].draft_stop for c in spec] == [None, "entropy:0.5", "entropy:1.5"]
    assert all(c["options"].num_draft_tokens == 6 for c in spec)
    assert "entropy:1.5" in (tmp_path / "sw" / "frontier.md").read_text()
