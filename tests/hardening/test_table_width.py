"""Tables written to a pipe or a log keep every method name and header whole (the demo's speed table,
``fsgen bench``'s table); on a terminal rich lays them out as before."""
import io

from rich.console import Console
from rich.table import Table

from fsgen_engine.benchmark.console import print_table
from fsgen_engine.benchmark.demo_report import print_table as demo_table

METHODS = ["speculative (K=5, adaptive)", "contrastive (fsgen preset)", "oracle max_prob:0.5"]


def _summary():
    rows = [dict(method=m, router="max_prob:0.5", total_tokens=384, large_calls=97, mismatches=31, draft_tokens=0,
                 accepted_draft_tokens=0, seconds=3.21, tokens_per_s=119.6, speedup_vs_hf=1.07,
                 large_call_fraction=0.25, collaboration_frequency=0.081, acceptance_length=2.5) for m in METHODS]
    return dict(large="SmolLM2-135M-Instruct.Q4_1.gguf", small="early_exit:10", device="cpu", dtype="float32",
                prompts=["a", "b", "c"], max_new_tokens=128, quick=False,
                hf_baseline={"tokens": 384, "seconds": 3.4, "tokens_per_s": 112.9}, rows=rows, hf_texts=None)


def test_demo_table_in_a_log_keeps_names_whole():
    buf = io.StringIO()
    console = Console(file=buf)  # not a terminal: rich assumes 80 columns
    assert not console.is_terminal and console.width == 80
    demo_table(console, _summary())
    text = buf.getvalue()
    for m in METHODS + ["large-call frac", "HF generate (baseline)"]:
        assert m in text, (m, text)
    assert "…" not in text.split("tokens/s =")[0]


def test_bench_table_in_a_log_keeps_names_whole():
    from fsgen_engine.cli.bench import _print_table

    row = {"pair": "SmolLM2-135M-Instruct.Q4_1/early_exit:10", "batch": 8, "contender": "engine speculative",
           "tokens_per_s": 512.3, "ratio_vs_hf": 1.21, "ratio_vs_hf_assisted": 1.4, "acceptance_length": 2.7,
           "large_call_fraction": 0.31, "collaboration_frequency": 0.08, "bandwidth_gbs": 3.2,
           "bandwidth_share": 0.3, "error": None}
    buf = io.StringIO()
    _print_table(Console(file=buf), {"env": {"device_name": "cpu"}, "copy_bandwidth_gbs": 10.5, "notes": [],
                                     "rows": [row]})
    text = buf.getvalue()
    for s in (row["pair"], "engine speculative", "x HF assisted", "large-call frac", "of copy BW"):
        assert s in text, (s, text)
    assert "…" not in text


def test_terminal_layout_unchanged():
    def table():
        t = Table(title="t")
        for c in ("method", "tokens/s", "large-call frac", "collaboration frequency", "acceptance length"):
            t.add_column(c)
        for m in METHODS:
            t.add_row(m, "1.0", "0.25", "0.081", "2.5")
        return t

    a, b = io.StringIO(), io.StringIO()
    print_table(Console(file=a, force_terminal=True, width=60, color_system=None), table())
    Console(file=b, force_terminal=True, width=60, color_system=None).print(table())
    assert a.getvalue() == b.getvalue()
    assert max(len(ln) for ln in a.getvalue().splitlines()) <= 60
