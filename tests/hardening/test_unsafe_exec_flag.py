"""``fsgen eval/sweep --dataset mbpp`` refuse before loading any model when the sandbox cannot be set
up, and ``--unsafe-exec`` is the explicit way past that."""
import pytest

from fsgen_engine.cli import build_parser
from fsgen_engine.eval import sandbox
from fsgen_engine.eval.cli_common import make_config


def _args(*extra):
    return build_parser().parse_args(["eval", "--large", "x", "--small", "y", "--dataset", "mbpp", "--data",
                                      "mbpp.jsonl", *extra])


def test_mbpp_refused_without_isolation(monkeypatch):
    monkeypatch.setattr(sandbox, "isolation_error", lambda: "no user namespaces (test)")
    with pytest.raises(ValueError, match="--unsafe-exec") as e:
        make_config(_args())
    assert "no user namespaces (test)" in str(e.value)
    cfg = make_config(_args("--unsafe-exec"))
    assert cfg.unsafe_exec is True


def test_other_datasets_and_isolated_machines_unaffected(monkeypatch):
    monkeypatch.setattr(sandbox, "isolation_error", lambda: None)
    assert make_config(_args()).unsafe_exec is False
    monkeypatch.setattr(sandbox, "isolation_error", lambda: "no user namespaces (test)")
    args = build_parser().parse_args(["eval", "--large", "x", "--small", "y", "--dataset", "gsm8k", "--data", "g"])
    assert make_config(args).dataset == "gsm8k"


def test_eval_cli_reports_refusal_in_one_line(monkeypatch, tmp_path, capsys):
    from fsgen_engine.cli import main

    monkeypatch.setattr(sandbox, "isolation_error", lambda: "no user namespaces (test)")
    rc = main(["eval", "--large", "x", "--small", "y", "--dataset", "mbpp", "--data", str(tmp_path / "m.jsonl")])
    err = capsys.readouterr().err
    assert rc != 0 and "--unsafe-exec" in err and "Traceback" not in err
