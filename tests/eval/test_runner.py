"""The eval loop and the sweep against a fake engine (the real one is exercised in test_cli_real.py)."""
import json

import pytest

from fsgen_engine.eval.runner import EvalConfig, run_eval
from fsgen_engine.eval.sweep import parse_methods, parse_routers, run_sweep
from fsgen_engine.outputs import GenerationOutput, GenerationStats, Trace, TraceStep, read_traces


class FakeEngine:
    """Answers from a prompt -> text function; every 4th token is routed, every 8th a mismatch.
    Under method small nothing is routed; under large everything is."""

    tokenizer = None

    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def generate(self, prompts, *, method, router, max_new_tokens, stop=None, chat=False, **kw):
        self.calls.append({"n": len(prompts), "method": method, "router": router, "stop": stop, "chat": chat, **kw})
        outs = []
        for p in prompts:
            text = self.answer(p)
            n = 16
            tr = Trace()
            for i in range(n):
                routed = method == "large" or (method != "small" and i % 4 == 0)
                mism = method != "small" and i % 8 == 0
                tr.append(TraceStep(i, 0.5, 0.5, 0.1, routed, 7 if mism else 5, 5, 7 if routed else -1,
                                    "large" if routed else "small"))
            st = GenerationStats(total_tokens=n, large_calls=sum(tr.columns["routed"]),
                                 mismatches=sum(1 for i in range(n) if method != "small" and i % 8 == 0))
            outs.append(GenerationOutput(list(tr.columns["token"]), text, "stop", st, tr, p, method, router))
        return outs


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def gsm(tmp_path):
    rows = [{"question": f"What is {i} + 1000?", "answer": f"...\n#### {i + 1000:,}"} for i in range(6)]
    return _write(tmp_path / "gsm.jsonl", rows)


def _gsm_answer(prompt):
    q = prompt.rsplit("Question: ", 1)[1]
    i = int(q.split("What is ")[1].split(" ")[0])
    # rows 0,1: right with commas (research extraction misses); 2,3: right plain; 4,5 wrong
    if i < 2:
        return f"So it is {i + 1000:,}.\nThe answer is {i + 1000:,}\n\nQuestion: next"
    if i < 4:
        return f"The answer is {i + 1000}"
    return "The answer is 3"


def test_gsm8k_eval_writes_everything(gsm, tmp_path):
    eng = FakeEngine(_gsm_answer)
    cfg = EvalConfig("gsm8k", gsm, method="oracle", router="max_prob:0.5", large="L", small="S",
                     large_params="7B", small_params="0.5B", batch_size=4, gen_kwargs={"temperature": 0.0})
    out = tmp_path / "o"
    s = run_eval(eng, cfg, str(out), echo=False)
    assert s["n"] == 6 and s["accuracy"] == pytest.approx(4 / 6)
    # research extraction: gold "1,000" can never equal a comma-free number string
    assert s["accuracy_research"] == pytest.approx(0.0)
    assert s["total_tokens"] == 96 and s["large_calls"] == 24 and s["mismatches"] == 12
    assert s["collaboration_frequency"] == pytest.approx(12 / 96)
    assert s["tokens_per_s"] > 0
    assert [c["n"] for c in eng.calls] == [4, 2] and eng.calls[0]["stop"] == ["Question:"]
    traces = read_traces(out / "traces.jsonl")
    assert [t.meta["correct"] for t in traces] == [True, True, True, True, False, False]
    assert traces[0].meta["large_params"] == "7B" and traces[0].meta["dataset"] == "gsm8k"
    recs = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert recs[0]["total_tokens_num"] == 16 and recs[0]["latent_tokens_num"] == 4
    assert recs[0]["if_match_now"] == [1, 0, 1, 0] and recs[0]["mismatch_tokens_num"] == 2
    info = recs[0]["method_info"]  # compat writer: [router dict, method dict]; minimal: a dict
    router_name = info[0]["method"] if isinstance(info, list) else info["router"]
    assert router_name == "threshold"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy"] == pytest.approx(4 / 6)
    # the written files feed the analyses
    from fsgen_engine.analysis.collab import collab_stats
    from fsgen_engine.analysis.samples import load_samples
    for f in ("traces.jsonl", "records.jsonl"):
        assert collab_stats(load_samples([out / f])).cf_token == pytest.approx(12 / 96)


@pytest.mark.xdist_group("sandbox")   # runs MBPP code in the sandbox: beside tests/eval/test_sandbox.py
def test_mmlu_and_math_and_mbpp(tmp_path):
    mm = _write(tmp_path / "m.jsonl", [{"question": "q", "subject": "s", "choices": ["a", "b"], "answer": 1}] * 2)
    s = run_eval(FakeEngine(lambda p: "The answer is (B)"), EvalConfig("mmlu_stem", mm), echo=False)
    assert s["accuracy"] == 1.0
    s = run_eval(FakeEngine(lambda p: "hmm"), EvalConfig("mmlu_stem", mm), echo=False)
    assert s["accuracy"] == 0.0
    ma = _write(tmp_path / "math.jsonl", [{"problem": "p", "solution": "", "answer": "\\frac{1}{2}"}])
    s = run_eval(FakeEngine(lambda p: "so $\\boxed{\\dfrac12}$"), EvalConfig("math500", ma), echo=False)
    assert s["accuracy"] == 1.0
    rows = [{"text": "add", "code": "", "task_id": i, "test_list": ["assert add(1, 2) == 3"]} for i in range(3)]
    mb = _write(tmp_path / "mbpp.jsonl", rows)
    good = FakeEngine(lambda p: "def add(a, b):\n    return a + b\n[DONE]")
    s = run_eval(good, EvalConfig("mbpp", mb), echo=False)
    assert s["n"] == 3 and s["accuracy"] == 1.0  # a file shorter than 510 rows is taken as the split itself
    s = run_eval(FakeEngine(lambda p: "def add(a, b):\n    return a * b\n[DONE]"), EvalConfig("mbpp", mb), echo=False)
    assert s["accuracy"] == 0.0


def test_mtbench_two_turns(tmp_path):
    data = _write(tmp_path / "mt.jsonl", [{"question_id": 81, "category": "w", "turns": ["Hi one", "Now two"]}])
    eng = FakeEngine(lambda p: "reply")
    s = run_eval(eng, EvalConfig("mtbench", data), str(tmp_path / "o"), echo=False)
    assert s["accuracy"] is None and s["outputs"] == 2
    traces = read_traces(tmp_path / "o" / "traces.jsonl")
    assert [t.meta["turn"] for t in traces] == [1, 2]
    second = traces[1].prompt
    assert "Hi one" in second and "reply" in second and second.rstrip().endswith("assistant")


def test_parse_routers_and_methods():
    assert parse_routers(["max_prob:0.3,0.5", "learned:/a/b.pkl", "always"]) == [
        "max_prob:0.3", "max_prob:0.5", "learned:/a/b.pkl", "always"]
    with pytest.raises(ValueError, match="not a number"):
        parse_routers(["margin:x"])
    assert parse_methods("oracle, contrastive") == ["oracle", "contrastive"]


def test_sweep_writes_frontier(gsm, tmp_path):
    eng = FakeEngine(_gsm_answer)
    rows = run_sweep(eng, EvalConfig("gsm8k", gsm, large="L", small="S"), ["oracle", "contrastive"],
                     parse_routers(["max_prob:0.3,0.5"]), str(tmp_path / "sw"), echo=False)
    assert [(r["method"], r["router"]) for r in rows][:2] == [("large", "always"), ("small", "never")]
    assert len(rows) == 6
    assert rows[0]["large_call_fraction"] == 1.0 and rows[1]["large_call_fraction"] == 0.0
    png = (tmp_path / "sw" / "frontier.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert (tmp_path / "sw" / "frontier.md").read_text().count("\n") >= 8
    assert (tmp_path / "sw" / "oracle_max_prob_0.3" / "traces.jsonl").exists()


def test_minimal_record_writer_fallback():
    from fsgen_engine.eval.records import to_record

    out = FakeEngine(lambda p: "t").generate(["p"], method="oracle", router="margin:0.4", max_new_tokens=16)[0]
    out.meta = {"dataset": "gsm8k", "large": "L", "small": "S", "correct": True}
    rec = to_record(out)
    assert rec["if_match_now"] == [1, 0, 1, 0] and rec["total_tokens_num"] == 16
    assert rec["llm_name"] == "L" and rec["correct"] is True
    assert rec["method_info"] == {"method": "OracleDecoding", "router": "delta_threshold", "engine_router": "margin:0.4"}
