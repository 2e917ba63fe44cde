"""Evaluate one (method, router) on one data set with an :class:`fsgen_engine.engine.Engine`.

``run_eval`` builds prompts (datasets.py), generates in chunks, scores each output (answers.py;
MBPP in the sandbox), and writes to ``out_dir``: ``traces.jsonl`` (GenerationOutput with meta:
dataset, id, correct, model names), ``records.jsonl`` (FS-GEN record format), ``summary.json``.
Accuracy: gsm8k reports both extractions (``accuracy`` = corrected, ``accuracy_research``).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field

from . import answers, datasets
from .sandbox import check_mbpp

CHATML = "<|im_start|>{role}\n{content}<|im_end|>\n"


@dataclass
class EvalConfig:
    dataset: str
    data: str
    method: str = "oracle"
    router: str = "always"
    n: int | None = None
    seed: int = 0
    max_new_tokens: int = 512
    fewshot: str | None = None
    chat: bool = False
    batch_size: int = 16
    gen_kwargs: dict = field(default_factory=dict)  # temperature, top_k, alpha, beta, preset, ...
    large: str = ""
    small: str = ""
    large_params: str | None = None
    small_params: str | None = None
    mbpp_timeout: float = 10.0
    unsafe_exec: bool = False  # run MBPP code without OS isolation where it cannot be set up (sandbox.py)
    trace_topk: int = 0  # K of the top-K distributions kept per token (0 = off; research records: 100)


def _cut(text: str, stops: list[str]) -> str:
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if i >= 0:
            cut = min(cut, i)
    return text[:cut]


def score(dataset: str, ex: datasets.Example, text: str, mbpp_timeout: float = 10.0,
          unsafe_exec: bool = False) -> dict:
    """Check one output; returns a dict with at least ``correct`` (None for mtbench)."""
    text = _cut(text, datasets.STOPS[dataset])
    row = ex.row
    if dataset == "gsm8k":
        r = answers.check_gsm8k(text, row["answer"])
        return {**r, "correct": r["corrected"], "correct_research": r["research"]}
    if dataset == "mmlu_stem":
        return answers.check_mmlu(text, row["answer"])
    if dataset == "math500":
        return answers.check_math(text, row["answer"])
    if dataset == "mbpp":
        code = datasets.extract_code(text)
        r = check_mbpp(code, row["test_list"], row.get("test_setup_code", ""), timeout_s=mbpp_timeout,
                       unsafe_exec=unsafe_exec)
        return {**r, "code": code}
    return {"correct": None}


def render_chat(engine, messages: list[dict]) -> str:
    """A chat prompt string: the engine tokenizer's template when it has one, else ChatML (what the
    research code used)."""
    tok = getattr(engine, "tokenizer", None)
    if tok is not None and getattr(tok, "chat_template", None):
        try:
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # noqa: BLE001 - fall back to ChatML
            pass
    return "".join(CHATML.format(**m) for m in messages) + "<|im_start|>assistant\n"


def _generate(engine, prompts, cfg: EvalConfig, *, chat: bool, stop: list[str]):
    from fsgen_engine.generate_args import generate_kwargs

    kw = {k: v for k, v in cfg.gen_kwargs.items() if v is not None}
    outs, wall = [], 0.0
    for i in range(0, len(prompts), max(1, cfg.batch_size)):
        chunk = prompts[i:i + cfg.batch_size]
        t0 = time.perf_counter()
        res = engine.generate(chunk, method=cfg.method, router=cfg.router, max_new_tokens=cfg.max_new_tokens,
                              stop=stop or None, chat=chat, trace_topk=cfg.trace_topk, **generate_kwargs(**kw))
        wall += time.perf_counter() - t0
        outs.extend(res)
    return outs, wall


def run_eval(engine, cfg: EvalConfig, out_dir: str | None = None, *, echo: bool = True) -> dict:
    examples = datasets.load_examples(cfg.dataset, cfg.data, n=cfg.n, seed=cfg.seed, fewshot_path=cfg.fewshot)
    stop = datasets.STOPS[cfg.dataset]
    per_output: list[tuple[datasets.Example, object, int]] = []  # (example, output, turn)
    if cfg.dataset == "mtbench":
        first = [render_chat(engine, [{"role": "user", "content": ex.turns[0]}]) for ex in examples]
        outs1, wall = _generate(engine, first, cfg, chat=False, stop=stop)
        second, idx2 = [], []
        for j, (ex, o) in enumerate(zip(examples, outs1)):
            per_output.append((ex, o, 1))
            if len(ex.turns) > 1:
                msgs = [{"role": "user", "content": ex.turns[0]}, {"role": "assistant", "content": o.text},
                        {"role": "user", "content": ex.turns[1]}]
                second.append(render_chat(engine, msgs))
                idx2.append(j)
        outs2, wall2 = _generate(engine, second, cfg, chat=False, stop=stop) if second else ([], 0.0)
        wall += wall2
        per_output += [(examples[j], o, 2) for j, o in zip(idx2, outs2)]
    else:
        outs, wall = _generate(engine, [ex.prompt for ex in examples], cfg, chat=cfg.chat, stop=stop)
        per_output = [(ex, o, 1) for ex, o in zip(examples, outs)]

    results = []
    for ex, out, turn in per_output:
        r = score(cfg.dataset, ex, out.text, cfg.mbpp_timeout, cfg.unsafe_exec) if turn == 1 or cfg.dataset != "mtbench" else {"correct": None}
        meta = dict(out.meta or {})
        meta.update({"dataset": cfg.dataset, "id": ex.row.get("task_id", ex.row.get("question_id", ex.index)),
                     "index": ex.index, "turn": turn, "large": cfg.large, "small": cfg.small,
                     "correct": r.get("correct"), "inputs": ex.prompt if turn == 1 else ex.turns[turn - 1]})
        if cfg.large_params:
            meta["large_params"] = cfg.large_params
        if cfg.small_params:
            meta["small_params"] = cfg.small_params
        gk = {k: v for k, v in cfg.gen_kwargs.items() if v is not None and k in ("alpha", "beta", "preset",
                                                                                 "num_draft_tokens")}
        if gk:
            meta["gen_kwargs"] = gk
        if "correct_research" in r:
            meta["correct_research"] = r["correct_research"]
        out.meta = meta
        if not out.method:
            out.method = cfg.method
        if not out.router:
            out.router = cfg.router
        results.append((ex, out, r))
    summary = summarize(cfg, results, wall)
    if out_dir:
        write_outputs(out_dir, engine, cfg, results, summary)
    if echo:
        print_summary(summary)
    return summary


def summarize(cfg: EvalConfig, results, wall: float) -> dict:
    outs = [o for _, o, _ in results]
    tot = sum(o.stats.total_tokens or len(o.token_ids) for o in outs)
    lc = sum(o.stats.large_calls for o in outs)
    mm = sum(o.stats.mismatches for o in outs)
    scored = [r for _, _, r in results if r.get("correct") is not None]
    s = {
        "dataset": cfg.dataset, "method": cfg.method, "router": cfg.router, "large": cfg.large,
        "small": cfg.small, "n": len({ex.index for ex, _, _ in results}), "seed": cfg.seed,
        "outputs": len(outs), "total_tokens": tot, "large_calls": lc, "mismatches": mm,
        "collaboration_frequency": mm / tot if tot else 0.0,
        "large_call_fraction": lc / tot if tot else 0.0,
        "mismatch_ratio": mm / lc if lc else 0.0,
        "wall_time_s": wall, "tokens_per_s": tot / wall if wall > 0 else 0.0,
        "accuracy": (sum(bool(r["correct"]) for r in scored) / len(scored)) if scored else None,
    }
    if cfg.dataset == "gsm8k" and scored:
        s["accuracy_research"] = sum(bool(r["correct_research"]) for r in scored) / len(scored)
    return s


def write_outputs(out_dir: str, engine, cfg: EvalConfig, results, summary: dict) -> None:
    from fsgen_engine.outputs import write_traces

    from .records import write_records

    os.makedirs(out_dir, exist_ok=True)
    outs = [o for _, o, _ in results]
    write_traces(os.path.join(out_dir, "traces.jsonl"), outs)
    summary["records_writer"] = write_records(os.path.join(out_dir, "records.jsonl"), outs,
                                              getattr(engine, "tokenizer", None))
    with open(os.path.join(out_dir, "results.jsonl"), "w", encoding="utf-8") as f:
        for ex, o, r in results:
            row = {"index": ex.index, "turn": o.meta.get("turn", 1), "text": o.text,
                   **{k: v for k, v in r.items() if k != "stderr"}}
            f.write(json.dumps(row, default=str) + "\n")
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump({**summary, "config": asdict(cfg)}, f, indent=2, default=str)


SUMMARY_KEYS = ("dataset", "method", "router", "n", "accuracy", "accuracy_research", "total_tokens",
                "collaboration_frequency", "large_call_fraction", "mismatch_ratio", "tokens_per_s", "wall_time_s")


def print_summary(summary: dict) -> None:
    from fsgen_engine.analysis.report import print_table

    keys = [k for k in SUMMARY_KEYS if k in summary]
    print_table(f"fsgen eval: {summary['dataset']} ({summary['method']}, router {summary['router']})",
                ["metric", "value"], [[k, summary[k] if summary[k] is not None else "n/a"] for k in keys])
