"""`fsgen eval` end to end on the real GGUF model (SmolLM2-135M) with an early-exit small model."""
import importlib.util
import json

import pytest

from fsgen_engine.cli import main
from tests._embedded_model import embedded_model_path


@pytest.mark.slow
def test_eval_gsm8k_tiny_real_model(tmp_path, capsys):
    if importlib.util.find_spec("fsgen_engine.engine") is None:
        pytest.skip("fsgen_engine.engine is not available yet")
    gguf = embedded_model_path()
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": f"...\n#### {a}"}) + "\n"
                            for q, a in (("Tom has 2 apples and buys 3 more. How many apples?", 5),
                                         ("What is 10 minus 4?", 6), ("What is 2 times 4?", 8))))
    out = tmp_path / "out"
    rc = main(["eval", "--dataset", "gsm8k", "--data", str(data), "--large", gguf, "--small", "early_exit:10",
               "--method", "oracle", "--router", "always", "--n", "2", "--max-new-tokens", "8",
               "--device", "cpu", "--out", str(out)])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 2 and summary["outputs"] == 2
    assert 0 < summary["total_tokens"] <= 16
    assert summary["large_calls"] == summary["total_tokens"]  # router always
    assert 0.0 <= summary["collaboration_frequency"] <= 1.0 and summary["tokens_per_s"] > 0
    assert "accuracy_research" in summary
    assert len((out / "records.jsonl").read_text().splitlines()) == 2
    assert main(["analyze", "collab", str(out / "traces.jsonl")]) == 0
