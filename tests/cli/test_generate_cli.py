"""``fsgen generate`` in-process on tiny saved HF models, and complete help for the subcommands."""
import argparse
import importlib.util

import pytest

from fsgen_engine.cli import build_parser, main

HAS_ENGINE = importlib.util.find_spec("fsgen_engine.engine") is not None


def _subparser(name):
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize("name", ["generate", "train-router"])
def test_every_option_has_help(name, capsys):
    p = _subparser(name)
    missing = [a.dest for a in p._actions if not a.help]
    assert not missing, f"options without help in fsgen {name}: {missing}"
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--out" in text and ("--method" in text or "--kind" in text)


def test_generate_requires_a_prompt(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--large", "x", "--small", "y"])
    assert exc.value.code == 2
    assert "--prompt" in capsys.readouterr().err


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from tests.compat.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.mark.skipif(not HAS_ENGINE, reason="engine not built yet")
@pytest.mark.parametrize("method,extra", [("oracle", ["--router", "max_prob:0.5"]),
                                          ("speculative", ["--num-draft-tokens", "3"]),
                                          ("proxy", ["--router", "always"])])
def test_generate_writes_traces(saved, tmp_path, capsys, method, extra):
    from fsgen_engine.outputs import read_traces

    large, small, small_ft = saved
    out = tmp_path / "traces.jsonl"
    argv = ["generate", "--large", large, "--small", small, "--method", method, "--prompt", "w5 w6 w7",
            "--prompt", "w9 w10", "--max-new-tokens", "6", "--device", "cpu", "--dtype", "float32",
            "--ignore-eos", "--out", str(out), *extra]
    if method == "proxy":
        argv += ["--small-ft", small_ft]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "tokens/s" in printed and "mismatches" in printed
    traces = read_traces(out)
    assert len(traces) == 2
    for o in traces:
        s = o.stats
        assert s.total_tokens == len(o.token_ids) == len(o.trace) == 6
        assert 0 <= s.mismatches <= s.large_calls <= s.total_tokens
        assert o.text in printed


@pytest.mark.skipif(not HAS_ENGINE, reason="engine not built yet")
def test_generate_num_samples(saved, tmp_path, capsys):
    from fsgen_engine.outputs import read_traces

    large, small, _ = saved
    out = tmp_path / "traces.jsonl"
    argv = ["generate", "--large", large, "--small", small, "--method", "large", "--prompt", "w5 w6 w7",
            "--prompt", "w9 w10", "--max-new-tokens", "4", "--device", "cpu", "--ignore-eos", "--temperature", "1.5",
            "--seed", "1", "-n", "3", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "[1.2]" in printed and "[0.0]" in printed
    traces = read_traces(out)
    assert [t.meta["sample"] for t in traces] == [0, 1, 2, 0, 1, 2]
    assert [t.prompt for t in traces] == ["w5 w6 w7"] * 3 + ["w9 w10"] * 3


def test_generate_bad_prompts_file(tmp_path, capsys):
    f = tmp_path / "p.jsonl"
    f.write_text('{"question": "no prompt key"}\n')
    assert main(["generate", "--large", "x", "--small", "y", "--prompts-file", str(f)]) == 2
    assert "no 'prompt' key" in capsys.readouterr().err
