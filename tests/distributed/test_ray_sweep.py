"""`fsgen sweep` / `fsgen eval` on a real local Ray instance (num_cpus=2) against the serial run, with
tiny random HF models saved to folders (workers load them by path)."""
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is the `distributed` extra: pip install .[distributed]")

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from toy import make_hf, make_tokenizer  # noqa: E402

from fsgen_engine.cli import main  # noqa: E402

TIMING = ("wall_time_s", "tokens_per_s")
pytestmark = pytest.mark.xdist_group("ray")  # one Ray instance: every test of this module in one worker


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = set(), [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def ray_instance():
    """A real local Ray instance for the module; afterwards no process it started may survive."""
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        yield ray
    finally:
        pids = _descendants(os.getpid())
        ray.shutdown()
        deadline = time.time() + 30
        while time.time() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.5)
        left = [p for p in pids if _alive(p)]
        assert not left, f"Ray processes left behind: {left}"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("pairs")  # llama only: the toy word-level tokenizer loads as is with it
    tok = make_tokenizer()
    out = {}
    for name, family, layers, seed in (("a_large", "llama", 3, 0), ("a_small", "llama", 1, 1),
                                       ("b_large", "llama", 2, 2), ("b_small", "llama", 1, 3)):
        make_hf(family, layers, seed).save_pretrained(d / name)
        tok.save_pretrained(d / name)
        out[name] = str(d / name)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    p = tmp_path_factory.mktemp("data") / "gsm8k.jsonl"
    # words of the toy vocabulary, so the models see real tokens (an all-<unk> prompt gives flat logits)
    p.write_text("".join(json.dumps({"question": f"w{10 + i} w{40 + 3 * i} w{90 + 5 * i} w7", "answer": "#### 1"})
                         + "\n" for i in range(4)))
    return str(p)


def _sweep(models, data, out, pairs, *extra):
    argv = ["sweep", "--methods", "oracle,contrastive", "--routers", "max_prob:0.5", "--dataset", "gsm8k",
            "--data", data, "--n", "2", "--max-new-tokens", "6", "--batch-size", "2", "--device", "cpu",
            "--dtype", "float32", "--kv-memory", "2MiB", "--out", str(out)]
    for (lg, sm), params in pairs:
        argv += ["--pair", models[lg], models[sm], "--pair-params", *params]
    return main(argv + list(extra))


def _runs(out: Path) -> dict[str, Path]:
    return {str(p.parent.relative_to(out)): p.parent for p in out.glob("*/*/summary.json")}


def _frontier(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in json.loads(path.read_text())]


PAIRS = [(("a_large", "a_small"), ("7B", "0.5B")), (("b_large", "b_small"), ("14B", "0.5B"))]


def test_ray_sweep_of_two_pairs_equals_serial(ray_instance, models, data, tmp_path, capsys):
    assert _sweep(models, data, tmp_path / "serial", PAIRS) == 0
    assert _sweep(models, data, tmp_path / "ray", PAIRS, "--ray") == 0
    serial, on_ray = _runs(tmp_path / "serial"), _runs(tmp_path / "ray")
    # 2 pairs x (large, small baselines + 2 methods x (max_prob:0.5 and always for the collaboration frequency))
    assert len(serial) == 12 and sorted(serial) == sorted(on_ray)
    for key in serial:
        for f in ("records.jsonl", "results.jsonl"):
            assert (serial[key] / f).read_bytes() == (on_ray[key] / f).read_bytes(), (key, f)
        assert (serial[key] / "records.jsonl").read_text().count("\n") == 2
    # the router made real decisions: some tokens from each model
    frac = json.loads((serial["a_large+a_small/oracle_max_prob_0.5"] / "summary.json").read_text())
    assert 0 < frac["large_call_fraction"] < 1
    for pair in ("a_large+a_small", "b_large+b_small"):
        assert _frontier(tmp_path / "serial" / pair / "frontier.json") == \
            _frontier(tmp_path / "ray" / pair / "frontier.json")
        assert (tmp_path / "ray" / pair / "frontier.png").exists()
    assert (tmp_path / "serial" / "collaboration.csv").read_text() == (tmp_path / "ray" / "collaboration.csv").read_text()
    assert "not fitted, it needs 3 or more pairs" in capsys.readouterr().out


def test_failed_job_is_reported_others_finish_and_rerun_resumes(ray_instance, models, data, tmp_path, capsys):
    broken = tmp_path / "c_large"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    models = {**models, "c_large": str(broken)}
    pairs = PAIRS + [(("c_large", "a_small"), ("3B", "0.5B"))]
    out = tmp_path / "out"
    assert _sweep(models, data, out, pairs, "--ray", "--ray-retries", "1") == 1
    cap = capsys.readouterr()
    assert "failed (attempt 1/2)" in cap.err and "failed (attempt 2/2)" in cap.err
    assert "6 job(s) failed after retries" in cap.err and "c_large+a_small" in cap.err
    # the job's own error (models/checks.py names the file and the problem), not Ray's wrapper
    assert "c_large/config.json is not valid JSON" in cap.err
    done = _runs(out)
    assert len(done) == 12 and not any(k.startswith("c_large") for k in done)  # the other pairs finished
    stamps = {k: (p / "summary.json").stat().st_mtime_ns for k, p in done.items()}
    # fix the broken model and rerun the same command: only its 6 jobs run
    shutil.rmtree(broken)
    shutil.copytree(models["b_large"], broken)
    assert _sweep(models, data, out, pairs, "--ray") == 0
    assert "resuming: 12 of 18 job(s) already finished, skipped" in capsys.readouterr().out
    done = _runs(out)
    assert len(done) == 18
    assert {k: (done[k] / "summary.json").stat().st_mtime_ns for k in stamps} == stamps
    fits = json.loads((out / "scaling_law.json").read_text())  # 3 pairs: the scaling law is fitted
    assert set(fits) == {"oracle", "contrastive"} and fits["oracle"]["n"] == 3


def test_eval_on_ray_equals_serial(ray_instance, models, data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)  # relative paths: the workers run elsewhere, resume must still match
    rel = lambda p: os.path.relpath(p, tmp_path.parent)  # noqa: E731
    argv = ["eval", "--large", rel(models["a_large"]), "--small", rel(models["a_small"]), "--method", "oracle",
            "--router", "max_prob:0.5", "--dataset", "gsm8k", "--data", rel(data), "--n", "3", "--max-new-tokens", "6",
            "--device", "cpu", "--dtype", "float32", "--kv-memory", "2MiB"]
    assert main(argv + ["--out", str(tmp_path / "serial")]) == 0
    assert main(argv + ["--out", str(tmp_path / "ray"), "--ray"]) == 0
    for f in ("records.jsonl", "traces.jsonl", "results.jsonl"):
        assert (tmp_path / "serial" / f).exists()
    assert (tmp_path / "serial" / "records.jsonl").read_bytes() == (tmp_path / "ray" / "records.jsonl").read_bytes()
    capsys.readouterr()
    assert main(argv + ["--out", str(tmp_path / "ray"), "--ray"]) == 0  # already there: not run again
    assert "already holds this run" in capsys.readouterr().err


def test_unplaceable_jobs_are_refused_not_waited_for(ray_instance, models, data, tmp_path, capsys):
    argv = ["eval", "--large", models["a_large"], "--small", models["a_small"], "--dataset", "gsm8k", "--data", data,
            "--n", "1", "--max-new-tokens", "2", "--out", str(tmp_path / "o"), "--ray"]
    assert main(argv + ["--device", "cuda"]) == 2  # the local instance has no GPU: refused as bad input
    assert "needs 1 GPU(s) and 1.0 CPU(s) but the Ray cluster has 0 GPU(s)" in capsys.readouterr().err
    assert main(argv + ["--device", "cpu", "--ray-cpus-per-job", "3"]) == 2
    assert "use --device cpu, a smaller --ray-cpus-per-job" in capsys.readouterr().err
