import os
import uuid

from fsgen_engine.eval.sandbox import check_mbpp, run_sandboxed

SOLUTION = "def add(a, b):\n    return a + b\n"
TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]


def test_passes_correct_code():
    assert check_mbpp(SOLUTION, TESTS)["correct"]


def test_fails_wrong_code():
    r = check_mbpp("def add(a, b):\n    return a - b\n", TESTS)
    assert not r["correct"] and r["status"] == "failed"


def test_syntax_error():
    assert run_sandboxed("def f(:\n").status == "syntax_error"


def test_kills_infinite_loop_within_limit():
    # returning at all proves the child was killed (a missed kill would hang here); no wall-clock check
    r = run_sandboxed("while True:\n    pass\n", timeout_s=1.5)
    assert r.status == "timeout" and not r.passed


def test_blocks_writes_outside_temp_dir(tmp_path):
    target = tmp_path / f"escape_{uuid.uuid4().hex}.txt"
    for code in (f"open({str(target)!r}, 'w').write('x')",
                 f"import os\nfd = os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT)",
                 f"import pathlib\npathlib.Path({str(target)!r}).write_text('x')",
                 f"import subprocess\nsubprocess.run(['touch', {str(target)!r}])",
                 f"import os\nos.system('touch {target}')"):
        r = run_sandboxed(code)
        assert not r.passed, code
        assert "sandbox" in r.stderr, r.stderr
        assert not target.exists(), code


def test_blocks_removal_outside_temp_dir(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("keep")
    r = run_sandboxed(f"import os\nos.remove({str(victim)!r})")
    assert not r.passed and victim.exists()
    r = run_sandboxed(f"import shutil\nshutil.rmtree({str(tmp_path)!r})")
    assert not r.passed and victim.exists()


def test_allows_writes_inside_temp_dir():
    code = "open('scratch.txt', 'w').write('hi')\nassert open('scratch.txt').read() == 'hi'\n"
    assert run_sandboxed(code).passed


def test_runs_out_of_process():
    r = run_sandboxed(f"import os\nassert os.getpid() != {os.getpid()}")
    assert r.passed
