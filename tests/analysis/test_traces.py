import json

import numpy as np
import pytest

from fsgen_engine.analysis.collab import analyze_collab, collab_stats
from fsgen_engine.analysis.position import analyze_position, position_stats
from fsgen_engine.analysis.samples import load_samples
from fsgen_engine.analysis.uncertainty import analyze_uncertainty
from fsgen_engine.cli import main
from fsgen_engine.outputs import write_traces

from .synth import make_output, separable_outputs

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == PNG and len(data) > 3000


@pytest.fixture
def two_files(tmp_path):
    # file a: 10 tokens, 2 mismatches (at 0 and 5); 20 tokens, 1 mismatch (at 19), only 4 routed steps
    a = [make_output(10, {0, 5}, meta={"large": "L7", "small": "S1", "dataset": "gsm8k"}),
         make_output(20, {19}, routed_at={0, 1, 2, 19}, meta={"large": "L7", "small": "S1", "dataset": "gsm8k"})]
    b = [make_output(8, {1, 2, 3, 4}, meta={"large": "L7", "small": "S1", "dataset": "mbpp"})]
    pa, pb = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_traces(pa, a)
    write_traces(pb, b)
    return pa, pb


def test_collab_exact(two_files):
    samples = load_samples(two_files)
    st = collab_stats(samples[:2])
    assert (st.total_tokens, st.large_calls, st.mismatches) == (30, 14, 3)
    assert st.cf_token == pytest.approx(3 / 30)
    assert st.cf_sample == pytest.approx((2 / 10 + 1 / 20) / 2)
    assert st.large_ratio_token == pytest.approx(14 / 30)
    assert st.large_ratio_sample == pytest.approx((1.0 + 4 / 20) / 2)
    assert st.mismatch_ratio_token == pytest.approx(3 / 14)
    assert st.mismatch_ratio_sample == pytest.approx((2 / 10 + 1 / 4) / 2)


def test_collab_groups_and_plot(two_files, tmp_path):
    rows = analyze_collab(load_samples(two_files), str(tmp_path / "o"), echo=False)
    groups = {r.group: r for r in rows}
    assert set(groups) == {"L7 / S1 | gsm8k", "L7 / S1 | mbpp", "all"}
    assert groups["L7 / S1 | mbpp"].cf_token == pytest.approx(4 / 8)
    assert groups["all"].cf_token == pytest.approx(7 / 38)
    assert _is_png(tmp_path / "o" / "collab.png")
    assert "cf_token" in (tmp_path / "o" / "collab.md").read_text()


def test_position_bins(two_files, tmp_path):
    samples = load_samples(two_files)
    st = position_stats(samples[:2])
    # positions 0/10 -> bin 0, 5/10 -> bin 5, 19/20 -> bin 9
    expect = np.zeros(10, int)
    expect[[0, 5, 9]] = 1
    np.testing.assert_array_equal(st.mismatches, expect)
    np.testing.assert_array_equal(st.tokens, [3] * 10)
    assert st.share.sum() == pytest.approx(1.0)
    assert st.rate[0] == pytest.approx(1 / 3)
    stats = analyze_position(samples, str(tmp_path / "o"), echo=False)
    assert len(stats) == 2
    mbpp = [s for s in stats if "mbpp" in s.group][0]
    # 8 tokens, mismatches at 1..4 -> relative 0.125, 0.25, 0.375, 0.5 -> bins 1, 2, 3, 5
    np.testing.assert_array_equal(np.nonzero(mbpp.mismatches)[0], [1, 2, 3, 5])
    assert _is_png(tmp_path / "o" / "position.png")
    assert (tmp_path / "o" / "position.csv").exists()


def test_group_by_file_when_no_meta(tmp_path):
    p = tmp_path / "plain.jsonl"
    write_traces(p, [make_output(5, {1})])
    stats = analyze_position(load_samples([p]), None, echo=False)
    assert stats[0].group == "plain.jsonl"


def test_uncertainty_separable(tmp_path):
    p = tmp_path / "u.jsonl"
    write_traces(p, separable_outputs(np.random.default_rng(0)))
    res = analyze_uncertainty(load_samples([p]), str(tmp_path / "o"), echo=False)
    aucs = {s.stat: s.auc for s in res.stats}
    assert aucs == pytest.approx({"entropy": 1.0, "max_prob": 1.0, "margin": 1.0})
    ent = [s for s in res.stats if s.stat == "entropy"][0]
    assert 1.0 <= ent.threshold <= 2.0 + 1e-9
    assert res.n_mismatch == 6 * 8 and res.n_steps == 6 * 40
    assert "router" in res.recommendation()
    assert _is_png(tmp_path / "o" / "uncertainty.png")


def test_uncertainty_picks_the_informative_statistic(tmp_path):
    rng = np.random.default_rng(1)
    n = 400
    mism = set(int(i) for i in rng.choice(n, 80, replace=False))
    ent = [rng.uniform(1.5, 3) if i in mism else rng.uniform(0, 2) for i in range(n)]  # informative
    mp = rng.uniform(0, 1, n)  # noise
    mg = rng.uniform(0, 1, n)  # noise
    p = tmp_path / "u.jsonl"
    write_traces(p, [make_output(n, mism, entropy=ent, max_prob=mp, margin=mg)])
    res = analyze_uncertainty(load_samples([p]), None, echo=False)
    assert res.best.stat == "entropy"
    assert "entropy:" in res.recommendation()
    aucs = {s.stat: s.auc for s in res.stats}
    assert 0.35 < aucs["max_prob"] < 0.65 and aucs["entropy"] > 0.8


def _fsgen_record(flags, probs_per_step):
    return {"text": "t", "tokens": ["a"] * len(flags), "topK": 100,
            "slm_logits_prob": [[[p], list(range(len(p)))] for p in probs_per_step],
            "llm_logits_prob": [], "if_match_now": flags, "total_tokens_num": len(flags),
            "latent_tokens_num": len(flags), "mismatch_tokens_num": sum(flags),
            "llm_name": "Qwen1.5-7B", "slm_name": "Qwen1.5-0.5B", "dataset": "gsm8k"}


def test_fsgen_records_detected(tmp_path):
    flags = [1, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    probs = [[0.3, 0.3, 0.2] if f else [0.9, 0.05] for f in flags]
    recs = [_fsgen_record(flags, probs),
            # a thresholded record: positions unknown, counts still usable
            {"if_match_now": [1, 0], "total_tokens_num": 30, "latent_tokens_num": 2, "mismatch_tokens_num": 1}]
    p = tmp_path / "r.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    samples = load_samples([p])
    assert [s.fmt for s in samples] == ["fsgen", "fsgen"]
    assert samples[0].positions == [0.0, 0.4] and samples[1].positions is None
    st = collab_stats(samples)
    assert st.cf_token == pytest.approx(3 / 40) and st.large_calls == 12
    assert position_stats(samples).skipped == 1
    res = analyze_uncertainty(samples, None, echo=False)
    assert {s.stat: s.auc for s in res.stats} == pytest.approx({"entropy": 1.0, "max_prob": 1.0, "margin": 1.0})
    mp = [s for s in res.stats if s.stat == "max_prob"][0]
    assert mp.mismatch_mean == pytest.approx(0.3) and mp.match_mean == pytest.approx(0.9)


def test_cli_analyses(two_files, tmp_path, capsys):
    out = tmp_path / "cli"
    files = [str(f) for f in two_files]
    assert main(["analyze", "collab", *files, "--out", str(out)]) == 0
    assert main(["analyze", "position", *files, "--out", str(out)]) == 0
    assert main(["analyze", "uncertainty", *files, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "recommendation:" in text and "Collaboration statistics" in text
    for stem in ("collab", "position", "uncertainty"):
        assert _is_png(out / f"{stem}.png")


def test_cli_bad_file(tmp_path, capsys):
    p = tmp_path / "x.jsonl"
    p.write_text('{"foo": 1}\n')
    assert main(["analyze", "collab", str(p)]) == 2
    assert "neither a trace" in capsys.readouterr().err
