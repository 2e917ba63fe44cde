import json

import pytest

from fsgen_engine.eval.datasets import MBPP_TEST, extract_code, load_examples, sample_indices


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_sampling_is_seeded_and_in_range():
    a = sample_indices(1000, 20, seed=3, eligible=MBPP_TEST)
    assert a == sample_indices(1000, 20, seed=3, eligible=MBPP_TEST)
    assert a != sample_indices(1000, 20, seed=4, eligible=MBPP_TEST)
    assert len(set(a)) == 20 and all(10 <= i <= 509 for i in a)
    assert sample_indices(5, None, 0) == list(range(5))
    assert sample_indices(5, 50, 0) == list(range(5))


def test_gsm8k_prompt_with_fewshot_next_to_data(tmp_path):
    data = _write(tmp_path / "gsm.jsonl", [{"question": "Q1?", "answer": "x\n#### 1"}])
    (tmp_path / "gsm8k_8shot_prompt.txt").write_text("Question: demo\nLet's think step by step\nThe answer is 2\n")
    ex = load_examples("gsm8k", data)[0]
    assert ex.prompt.startswith("Question: demo")
    assert ex.prompt.endswith("\n\nQuestion: Q1?\nLet's think step by step\n")
    with pytest.raises(FileNotFoundError):
        load_examples("gsm8k", data, fewshot_path=str(tmp_path / "missing.txt"))


def test_mbpp_uses_test_split(tmp_path):
    rows = [{"text": f"task {i}", "code": "", "task_id": i + 1, "test_list": ["assert True"]} for i in range(520)]
    exs = load_examples("mbpp", _write(tmp_path / "mbpp.jsonl", rows))
    assert [e.index for e in exs] == list(range(10, 510))


def test_wrong_file_is_clear(tmp_path):
    data = _write(tmp_path / "x.jsonl", [{"text": "t"}])
    with pytest.raises(ValueError, match="does not look like gsm8k"):
        load_examples("gsm8k", data)
    with pytest.raises(ValueError, match="unknown"):
        load_examples("squad", data)


def test_mmlu_prompt(tmp_path):
    data = _write(tmp_path / "m.jsonl", [{"question": "2+2?", "subject": "math", "choices": ["3", "4"], "answer": 1}])
    p = load_examples("mmlu_stem", data)[0].prompt
    assert "(A) 3\n(B) 4" in p and "The answer is (X)" in p


@pytest.mark.parametrize("text,code", [
    ("def f():\n    return 1\n[DONE]\nmore", "def f():\n    return 1"),
    ("Here:\n```python\ndef f():\n    return 1\n```\nbye", "def f():\n    return 1\n"),
    ("def g(): pass", "def g(): pass"),
])
def test_extract_code(text, code):
    assert extract_code(text) == code
