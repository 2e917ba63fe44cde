import json

import numpy as np
import pytest

from fsgen_engine.analysis.scaling import fit_scaling_law, load_rows, make_rows, parse_size, scaling_law
from fsgen_engine.cli import main


@pytest.mark.parametrize("text,value", [("7B", 7e9), ("0.5B", 5e8), ("135M", 1.35e8), ("1.8b", 1.8e9),
                                        ("350k", 3.5e5), ("72b", 7.2e10), (" 14 B ", 1.4e10), ("1.3e9", 1.3e9),
                                        (500, 500.0), (0.5e9, 5e8), ("1,000", 1000.0)])
def test_parse_size(text, value):
    assert parse_size(text) == pytest.approx(value)


@pytest.mark.parametrize("bad", ["", "7X", "B", "-3B", "0", "abc", True, "1.2.3B"])
def test_parse_size_rejects(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


def _synthetic(a, alpha, b, noise, seed=0):
    rng = np.random.default_rng(seed)
    smalls = [0.5e9, 1.8e9, 4e9]
    larges = [4e9, 7e9, 14e9, 32e9, 72e9, 110e9]
    rows = []
    for s in smalls:
        for lg in larges:
            if lg > s:
                cf = scaling_law(lg / s, a, alpha, b) + rng.normal(0, noise)
                rows.append({"large_params": lg, "small_params": s, "cf": cf})
    return rows


def test_fit_recovers_known_parameters():
    a, alpha, b = 0.3, 0.6, 0.25
    rows = _synthetic(a, alpha, b, noise=0.002)
    fit = fit_scaling_law(make_rows(rows))
    assert fit.a == pytest.approx(a, rel=0.1)
    assert fit.alpha == pytest.approx(alpha, rel=0.1)
    assert fit.b == pytest.approx(b, abs=0.01)
    assert fit.r2 > 0.98
    assert fit.n == len(rows)


def test_fit_exact_data_r2_one():
    fit = fit_scaling_law(make_rows(_synthetic(0.5, 1.2, 0.4, noise=0.0)))
    assert fit.r2 == pytest.approx(1.0, abs=1e-6)
    assert (fit.a, fit.alpha, fit.b) == pytest.approx((0.5, 1.2, 0.4), rel=1e-3)


@pytest.mark.parametrize("rows,msg", [
    ([{"large_params": "7B", "cf": 0.1}] * 3, "missing"),
    ([{"large_params": "7Q", "small_params": "1B", "cf": 0.1}] * 3, "cannot parse"),
    ([{"large_params": "1B", "small_params": "7B", "cf": 0.1}] * 3, "smaller"),
    ([{"large_params": "7B", "small_params": "1B", "cf": "x"}] * 3, "not a number"),
])
def test_bad_rows(rows, msg):
    with pytest.raises(ValueError, match=msg):
        make_rows(rows)


def test_too_few_rows():
    with pytest.raises(ValueError, match="at least 3"):
        fit_scaling_law(make_rows([{"large_params": "7B", "small_params": "1B", "cf": 0.1}] * 2))


def _write_csv(path, rows):
    with open(path, "w") as f:
        f.write("large_params,small_params,cf\n")
        for r in rows:
            f.write(f"{r['large_params']},{r['small_params']},{r['cf']}\n")


def test_cli_prints_one_line_and_json(tmp_path, capsys):
    rows = _synthetic(0.3, 0.6, 0.25, noise=0.001)
    csv_path = tmp_path / "rows.csv"
    _write_csv(csv_path, rows)
    assert main(["analyze", "scaling-law", str(csv_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    fields = dict(kv.split("=") for kv in out[0].split())
    assert set(fields) == {"a", "alpha", "b", "r2", "n"}
    assert float(fields["alpha"]) == pytest.approx(0.6, rel=0.1) and fields["n"] == str(len(rows))

    json_path = tmp_path / "rows.json"
    json_path.write_text(json.dumps([{**r, "large_params": f"{r['large_params'] / 1e9:g}B",
                                      "small_params": f"{r['small_params'] / 1e9:g}B"} for r in rows]))
    out_dir = tmp_path / "plots"
    assert main(["analyze", "scaling-law", str(json_path), "--json", "--out", str(out_dir)]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["n"] == len(rows) and obj["a"] == pytest.approx(0.3, rel=0.15)
    png = (out_dir / "scaling_law.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert (out_dir / "scaling_law.md").exists() and (out_dir / "scaling_law.csv").exists()


def test_cli_bad_csv_is_clear_error(tmp_path, capsys):
    p = tmp_path / "bad.csv"
    p.write_text("large,small_params,cf\n7B,1B,0.1\n")
    assert main(["analyze", "scaling-law", str(p)]) == 2
    assert "large_params" in capsys.readouterr().err


def test_rows_from_traces(tmp_path):
    from fsgen_engine.outputs import write_traces

    from .synth import make_output

    outs = []
    for lp, sp, k in (("7B", "0.5B", 2), ("14B", "0.5B", 3), ("72B", "0.5B", 4)):
        outs.append(make_output(20, set(range(k)), meta={"large_params": lp, "small_params": sp}))
        outs.append(make_output(10, set(), meta={"large_params": lp, "small_params": sp}))
    p = tmp_path / "t.jsonl"
    write_traces(p, outs)
    rows = sorted(load_rows([p]), key=lambda r: r.ratio)
    assert [r.cf for r in rows] == pytest.approx([2 / 30, 3 / 30, 4 / 30])
    assert rows[0].ratio == pytest.approx(14.0)
