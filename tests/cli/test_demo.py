"""`fsgen demo --quick` on the real embedded model: files written, traces parse, totals consistent."""
import json
import os

import pytest

from tests._embedded_model import requires_embedded_model

pytest.importorskip("fsgen_engine.engine", reason="the engine is not in this build")


@pytest.mark.slow
@requires_embedded_model
def test_demo_quick(tmp_path, capsys):
    from fsgen_engine.cli import main
    from fsgen_engine.outputs import read_traces

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tokens/s" in printed and "HF" in printed

    for name in ("traces.jsonl", "summary.json", "speed.png", "speed.md", "collab.png"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    traces = read_traces(out / "traces.jsonl")
    labels = [r["method"] for r in summary["rows"]]
    assert len(traces) == len(labels) * len(summary["prompts"])
    assert summary["hf_baseline"]["tokens"] > 0

    for row in summary["rows"]:
        outs = [t for t in traces if t.meta["label"] == row["method"]]
        assert len(outs) == len(summary["prompts"])
        for o in outs:
            n = o.stats.total_tokens
            assert n == len(o.token_ids) == len(o.trace) <= summary["max_new_tokens"] + 5
            assert 0 <= o.stats.mismatches <= o.stats.large_calls <= n
            assert o.trace.columns["token"] == o.token_ids
        assert row["total_tokens"] == sum(o.stats.total_tokens for o in outs)
        assert row["large_calls"] == sum(o.stats.large_calls for o in outs)
        assert row["mismatches"] == sum(o.stats.mismatches for o in outs)
        if row["total_tokens"]:
            assert row["large_call_fraction"] == pytest.approx(row["large_calls"] / row["total_tokens"])
        if row["method"] == "small":
            assert row["large_calls"] == 0
        if row["method"] == "large":
            assert row["large_calls"] == row["total_tokens"]
    for f in summary["files"]:
        assert os.path.exists(f), f
