"""Data sets, sampling and prompts (methods doc section 6).

Files are passed by the caller (``--data FILE``); nothing here knows where they live.
Sampling: ``n`` examples drawn without replacement by ``random.Random(seed)`` from the data set's
eligible rows (MBPP: the test split, rows 10..509, when the file is the full 974-row MBPP; a file with
fewer than 510 rows is taken to be a split already and used whole), kept in file order.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field

DATASETS = ("gsm8k", "mmlu_stem", "mbpp", "mtbench", "math500")
MBPP_TEST = range(10, 510)  # rows 10..509 are MBPP's test split
FEWSHOT_NAME = "gsm8k_8shot_prompt.txt"
REQUIRED_KEYS = {
    "gsm8k": ("question", "answer"),
    "mmlu_stem": ("question", "choices", "answer"),
    "mbpp": ("text", "test_list"),
    "mtbench": ("turns",),
    "math500": ("problem", "answer"),
}
STOPS = {
    "gsm8k": ["Question:"],
    "mmlu_stem": ["Question:"],
    "mbpp": ["[DONE]"],
    "mtbench": [],
    "math500": [],
}
MMLU_LETTERS = "ABCDEFGHIJ"


@dataclass
class Example:
    """One evaluation item: ``index`` (row in the file), ``row`` (the JSON object), ``prompt``
    (string; for mtbench the first turn) and ``turns`` (mtbench: every user turn)."""

    index: int
    row: dict
    prompt: str
    turns: list[str] = field(default_factory=list)


def read_jsonl(path: str) -> list[dict]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"--data {path!r} does not exist")
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{i}: not JSON ({exc})") from None
    return rows


def sample_indices(n_rows: int, n: int | None, seed: int, eligible: range | None = None) -> list[int]:
    pool = list(eligible if eligible is not None else range(n_rows))
    pool = [i for i in pool if i < n_rows]
    if n is None or n >= len(pool):
        return pool
    if n <= 0:
        raise ValueError(f"--n {n} must be positive")
    return sorted(random.Random(seed).sample(pool, n))


def default_fewshot(data_path: str) -> str | None:
    cand = os.path.join(os.path.dirname(os.path.abspath(data_path)), FEWSHOT_NAME)
    return cand if os.path.exists(cand) else None


def gsm8k_prompt(question: str, fewshot: str) -> str:
    head = fewshot.rstrip("\n") + "\n\n" if fewshot.strip() else ""
    return f"{head}Question: {question}\nLet's think step by step\n"


def mmlu_prompt(row: dict) -> str:
    subject = str(row.get("subject", "")).replace("_", " ")
    opts = "\n".join(f"({MMLU_LETTERS[i]}) {c}" for i, c in enumerate(row["choices"]))
    about = f" about {subject}" if subject else ""
    return (f"The following is a multiple choice question{about}. Think step by step and then finish your "
            f"answer with \"The answer is (X)\" where X is the correct letter choice.\n\n"
            f"Question: {row['question']}\nOptions:\n{opts}\nAnswer: Let's think step by step.")


def mbpp_prompt(row: dict) -> str:
    tests = "\n".join(row["test_list"])
    return (f"You are an expert Python programmer, and here is your task: {row['text']} "
            f"Your code should pass these tests:\n\n{tests}\n\n"
            "Write the complete Python function between [BEGIN] and [DONE].\n[BEGIN]\n")


def math500_prompt(row: dict) -> str:
    return ("Solve the following math problem step by step. Put your final answer within \\boxed{}.\n\n"
            f"Problem: {row['problem']}\n\nSolution:")


def load_examples(dataset: str, data_path: str, *, n: int | None = None, seed: int = 0,
                  fewshot_path: str | None = None) -> list[Example]:
    """Read ``data_path``, sample ``n`` rows with ``seed`` and build their prompts."""
    if dataset not in DATASETS:
        raise ValueError(f"--dataset {dataset!r} is unknown; choose one of {', '.join(DATASETS)}")
    rows = read_jsonl(data_path)
    if not rows:
        raise ValueError(f"--data {data_path!r} is empty")
    missing = [k for k in REQUIRED_KEYS[dataset] if k not in rows[0]]
    if missing:
        raise ValueError(f"--data {data_path!r} does not look like {dataset}: rows lack {missing} "
                         f"(first row has {sorted(rows[0])})")
    eligible = MBPP_TEST if dataset == "mbpp" and len(rows) >= MBPP_TEST.stop else None
    idx = sample_indices(len(rows), n, seed, eligible)
    fewshot = ""
    if dataset == "gsm8k":
        path = fewshot_path or default_fewshot(data_path)
        if fewshot_path and not os.path.exists(fewshot_path):
            raise FileNotFoundError(f"--fewshot {fewshot_path!r} does not exist")
        if path:
            with open(path, encoding="utf-8") as f:
                fewshot = f.read()
    out = []
    for i in idx:
        row = rows[i]
        if dataset == "gsm8k":
            out.append(Example(i, row, gsm8k_prompt(row["question"], fewshot)))
        elif dataset == "mmlu_stem":
            out.append(Example(i, row, mmlu_prompt(row)))
        elif dataset == "mbpp":
            out.append(Example(i, row, mbpp_prompt(row)))
        elif dataset == "math500":
            out.append(Example(i, row, math500_prompt(row)))
        else:
            turns = [str(t) for t in row["turns"]]
            out.append(Example(i, row, turns[0], turns))
    return out


def extract_code(text: str) -> str:
    """The program in a completion: a ```python fenced block if any, else the text before [DONE]."""
    import re

    fence = re.findall(r"```(?:python|py)?\s*\n(.*?)```", text, flags=re.DOTALL)
    if fence:
        return max(fence, key=len)
    code = text.split("[DONE]")[0]
    code = code.replace("[BEGIN]", "")
    # an unterminated fence
    if "```" in code:
        code = re.sub(r"```(?:python|py)?", "", code)
    return code.strip("\n")
