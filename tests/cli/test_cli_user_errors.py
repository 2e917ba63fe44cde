"""``fsgen generate`` never shows a traceback for a user error: a random-bytes GGUF, a truncated
safetensors file, a corrupt router file, a malformed .jsonl prompts file and ``--out`` in a missing
directory each give exit code 2 and one readable line naming what is wrong (``--out`` before any
model is loaded)."""
import os
import random
import subprocess
import sys

import pytest

from fsgen_engine.cli import main


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from tests.compat.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny"))


def _one_error_line(capsys, *needles):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("fsgen generate: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _run(large, small, *extra):
    return main(["generate", "--large", large, "--small", small, "--prompt", "w5 w6", "--max-new-tokens", "2",
                 "--device", "cpu", "--dtype", "float32", "--kv-memory", "8MB", "--quiet", *extra])


def test_random_bytes_gguf(saved, tmp_path, capsys):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(os.urandom(64))
    assert _run(saved[0], str(bad)) == 2
    _one_error_line(capsys, "small model", str(bad), "not a GGUF file")


def test_truncated_safetensors(saved, tmp_path, capsys):
    import shutil

    folder = tmp_path / "large"
    shutil.copytree(saved[0], folder)
    st = folder / "model.safetensors"
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 3])
    assert _run(str(folder), saved[1]) == 2
    _one_error_line(capsys, "large model", str(st), "corrupt or truncated")


# fixed bytes: parameters drawn at collection time would differ between pytest-xdist workers
@pytest.mark.parametrize("content", [random.Random(1).randbytes(100), b'{"format": "fsgen-router/2", ',
                                     b"\x80\x04K\x05."], ids=["random-bytes", "truncated-json", "pickle"])
def test_corrupt_router_file(saved, tmp_path, capsys, monkeypatch, content):
    router = tmp_path / "router.json"
    router.write_bytes(content)
    import fsgen_engine.engine as E

    monkeypatch.setattr(E.Engine, "__init__", lambda *a, **k: pytest.fail("models loaded before the router check"))
    assert _run(saved[0], saved[1], "--router", f"learned:{router}") == 2
    _one_error_line(capsys, str(router))


@pytest.mark.parametrize("line,what", [('{"prompt": "a"}\n{"prompt": broken\n', "not valid JSON"),
                                       ('{"prompt": "a"}\n[1, 2]\n', "must be a JSON string"),
                                       ('{"prompt": "a"}\n{"text": "b"}\n', "no 'prompt' key")])
def test_malformed_jsonl_names_file_and_line(tmp_path, capsys, line, what):
    f = tmp_path / "prompts.jsonl"
    f.write_text(line)
    assert main(["generate", "--large", "x", "--small", "y", "--prompts-file", str(f)]) == 2
    _one_error_line(capsys, f"{f}:2", what)


def test_binary_prompts_file(tmp_path, capsys):
    f = tmp_path / "prompts.txt"
    f.write_bytes(b"\xff\xfe\x00bad")
    assert main(["generate", "--large", "x", "--small", "y", "--prompts-file", str(f)]) == 2
    _one_error_line(capsys, str(f), "UTF-8")


def test_out_in_missing_directory_is_checked_before_loading(saved, tmp_path, capsys, monkeypatch):
    import fsgen_engine.engine as E

    monkeypatch.setattr(E.Engine, "__init__", lambda *a, **k: pytest.fail("models loaded before the --out check"))
    out = tmp_path / "missing" / "traces.jsonl"
    assert _run(saved[0], saved[1], "--out", str(out)) == 2
    _one_error_line(capsys, "--out", str(tmp_path / "missing"), "does not exist")


def test_console_script_prints_one_line(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(60))
    r = subprocess.run([sys.executable, "-m", "fsgen_engine.cli", "generate", "--large", str(bad), "--small", str(bad),
                        "--prompt", "hi", "--device", "cpu", "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "large model" in lines[0] and str(bad) in lines[0], r.stderr
