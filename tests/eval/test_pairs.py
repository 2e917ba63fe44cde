"""Multi-pair sweep inputs, job planning and resume checks (no Ray needed; Ray runs in tests/distributed)."""
import json
import sys
from dataclasses import asdict

import pytest

from fsgen_engine.cli import main
from fsgen_engine.eval.jobs import Job, Pair, load_done, make_job
from fsgen_engine.eval.pairs import pairs_from_args, read_pairs_file
from fsgen_engine.eval.runner import EvalConfig
from fsgen_engine.eval.sweep import plan_jobs, sweep_runs


def test_pairs_from_flags_and_files(tmp_path):
    ps = pairs_from_args([["m/L1", "m/S"], ["m/L2", "m/S"]], [["7B", "0.5B"], ["14B", "0.5B"]], None)
    assert [(p.name(), p.large_params) for p in ps] == [("L1+S", "7B"), ("L2+S", "14B")]
    js = tmp_path / "p.json"
    js.write_text(json.dumps([{"large": "a/L", "small": "a/S", "large_params": "72B", "small_params": "0.5B",
                               "label": "q72"}]))
    cs = tmp_path / "p.csv"
    cs.write_text("large,small,large_params,small_params\nb/L,b/S,4B,0.5B\nc/L,c/S,,\n")
    assert [p.name() for p in read_pairs_file(str(js))] == ["q72"]
    got = read_pairs_file(str(cs))
    assert (got[0].large_params, got[1].large_params) == ("4B", None)
    assert len(pairs_from_args([["x/L", "x/S"]], None, str(js))) == 2


@pytest.mark.parametrize("args,needle", [
    (([["L", "S"], ["L2", "S"]], [["7B", "1B"]], None), "--pair-params given 1 time"),
    (([["L", "S"]], [["0.5B", "7B"]], None), "must be below"),
    (([["L", "S"]], [["7B", "lots"]], None), "cannot parse parameter count"),
    (([["a/L", "S"], ["b/L", "S"]], None, None), "appear more than once"),
])
def test_bad_pairs(args, needle):
    with pytest.raises(ValueError, match=needle):
        pairs_from_args(*args)


def test_bad_pairs_file(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps([{"large": "L", "smal": "S"}]))
    with pytest.raises(ValueError, match=r"row 1 needs large and small.*unknown \['smal'\]"):
        read_pairs_file(str(f))
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_pairs_file(str(tmp_path / "missing.csv"))


def test_plan_jobs_layout(tmp_path):
    cfg = EvalConfig("gsm8k", "d.jsonl")
    one = plan_jobs([Pair("L", "S")], cfg, ["oracle"], ["max_prob:0.5"], str(tmp_path), {"device": "cpu"})
    assert [j.out_dir for j in one] == [str(tmp_path / d) for d in ("large_always", "small_never",
                                                                    "oracle_max_prob_0.5")]
    two = plan_jobs([Pair("L", "S"), Pair("L2", "S")], cfg, ["oracle"], ["max_prob:0.5"], str(tmp_path), {})
    assert len(two) == 8 and two[-1].out_dir == str(tmp_path / "L2+S" / "oracle_always")
    assert two[-1].cfg.large == "L2" and cfg.method == "oracle" and cfg.large == ""  # base config untouched
    assert sweep_runs(["oracle"], ["always"], with_always=True).count(("oracle", "always")) == 1
    with pytest.raises(ValueError, match="mtbench"):
        plan_jobs([Pair("L", "S")], EvalConfig("mtbench", "d"), ["oracle"], ["always"], None, {})


def test_resume_only_for_the_same_config(tmp_path):
    job = make_job(Pair("L", "S"), EvalConfig("gsm8k", "d.jsonl", n=4), "oracle", "always", {}, str(tmp_path))
    assert load_done(job) is None
    (tmp_path / "summary.json").write_text(json.dumps({"accuracy": 0.5, "config": asdict(job.cfg)}))
    assert load_done(job) == {"accuracy": 0.5}
    other = make_job(Pair("L", "S"), EvalConfig("gsm8k", "d.jsonl", n=8), "oracle", "always", {}, str(tmp_path))
    assert load_done(other) is None  # a folder from a run with other settings is run again
    (tmp_path / "summary.json").write_text("{trunc")
    assert load_done(job) is None


def test_ray_resources_and_missing_ray(monkeypatch):
    from fsgen_engine.distributed import ray_jobs

    job = Job(Pair("L", "S"), EvalConfig("gsm8k", "d"), {"device": "cpu"})
    assert ray_jobs.resources_for(job, cluster_gpus=8) == {"num_gpus": 0, "num_cpus": 1.0}
    job.engine_kwargs = {"device": "cuda"}
    assert ray_jobs.resources_for(job, cluster_gpus=8)["num_gpus"] == 1
    job.engine_kwargs = {}
    assert ray_jobs.resources_for(job, cluster_gpus=1)["num_gpus"] == 1
    assert ray_jobs.resources_for(job, cluster_gpus=0, cpus_per_job=2) == {"num_gpus": 0, "num_cpus": 2}
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the distributed extra were not installed
    with pytest.raises(ImportError, match=r"pip install \.\[distributed\]"):
        ray_jobs.import_ray()


def test_sweep_cli_model_errors(tmp_path, capsys):
    data = tmp_path / "g.jsonl"
    data.write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n")
    base = ["sweep", "--dataset", "gsm8k", "--data", str(data)]
    assert main(base) == 2  # bad input: exit 2, as argparse's own errors
    assert "give the models" in capsys.readouterr().err
    assert main(base + ["--large", "L", "--small", "S", "--pair", "A", "B"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(base + ["--large", "L", "--small", "S", "--pair-params", "7B", "1B"]) == 2
    assert "--pair-params goes with --pair" in capsys.readouterr().err
