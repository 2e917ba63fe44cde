"""The tokens/s measurement: every contender on the same models, prompts and decoding settings.

Contenders: ``hf`` (HF ``generate``, greedy, static cache where supported), ``hf-assisted`` (HF
assisted generation with the small model, or ``assistant_early_exit=N`` for an early-exit small
model) and one row per engine method. Every run decodes exactly ``max_new_tokens`` per prompt
(EOS ignored) so token counts match; one warm-up call is excluded and the median of ``runs`` timed
calls is reported.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from fsgen_engine.benchmark.bandwidth import achieved_bandwidth, shape_from_hf_config
from fsgen_engine.benchmark.configs import ModelPair, build_random_model, default_model_path, parse_models_spec

# (label, Engine.generate keyword arguments); speculative rows report acceptance length.
DEFAULT_METHODS: dict[str, dict] = {
    "large": dict(method="large"),
    "small": dict(method="small"),
    "speculative": dict(method="speculative"),
    "oracle": dict(method="oracle", router="always"),
    "oracle@max_prob:0.5": dict(method="oracle", router="max_prob:0.5"),
    "contrastive": dict(method="contrastive", preset="fsgen"),
    "bild": dict(method="bild"),
}

CHAT_PROMPTS = [
    "What is 12 * 7? Explain briefly.",
    "Write a haiku about the sea.",
    "Name three primary colors and one fact about each.",
    "Why is the sky blue?",
    "Give a short recipe for pancakes.",
    "What is the capital of France, and what is it famous for?",
    "Explain what a prime number is to a child.",
    "List four planets of the solar system.",
]


@dataclass
class Row:
    pair: str
    contender: str
    kind: str                    # hf | hf-assisted | engine
    batch: int
    new_tokens: int              # per prompt
    runs: int
    tokens_per_s: float          # median over runs (all prompts of the batch)
    tokens_per_s_runs: list[float]
    seconds_median: float
    ratio_vs_hf: float | None = None
    ratio_vs_hf_assisted: float | None = None
    acceptance_length: float | None = None
    large_call_fraction: float | None = None
    collaboration_frequency: float | None = None
    bandwidth_gbs: float | None = None
    bandwidth_share: float | None = None
    note: str = ""
    error: str = ""


@dataclass
class Settings:
    batch_sizes: list[int] = field(default_factory=lambda: [1, 4])
    max_new_tokens: int = 32
    runs: int = 3
    warmup: int = 1
    prompt_len: int = 32         # random-weight models: prompt length in tokens
    early_exit: int = 10
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    device: str = "auto"
    dtype: str = "auto"
    hf_cache: str = "static"
    baselines: list[str] = field(default_factory=lambda: ["hf", "hf-assisted"])
    seed: int = 0
    cuda_graphs: bool | None = None   # None: FSGEN_CUDA_GRAPHS (on by default on CUDA)
    tp: int | None = None             # --tp / --small-tp (tp/checks.py: tp_engine_kwargs)
    small_tp: int | None = None


def resolve_device_dtype(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    if dtype == "auto":
        dt = torch.bfloat16 if dev.type == "cuda" else torch.float32
    else:
        dt = getattr(torch, dtype, None)
        if not isinstance(dt, torch.dtype):
            raise ValueError(f"--dtype {dtype!r} is not a torch dtype: use auto, float32, bfloat16 or float16")
    return dev, dt


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


class PairRunner:
    """Loads one model pair (HF models for the baselines, the engine) and measures every contender."""

    def __init__(self, pair: ModelPair, settings: Settings, workdir: Path, log=print):
        from fsgen_engine.benchmark.hf import load_hf_model

        self.pair, self.s, self.log = pair, settings, log
        self.dev, self.dtype = resolve_device_dtype(settings.device, settings.dtype)
        dtype_name = str(self.dtype).replace("torch.", "")
        tok_src = None
        try:
            tok_src = default_model_path()
        except FileNotFoundError:
            pass
        self.large_path, self.small_path = pair.large, pair.small
        self.hf_small = None
        if pair.random_weights:
            log(f"[bench] building random-weight {pair.large} in {workdir}")
            folder = workdir / pair.large
            self.hf_large = build_random_model(pair.large, folder, dtype=dtype_name, device=self.dev,
                                               seed=settings.seed, tokenizer_from=tok_src)
            self.large_path = str(folder)
            if not pair.small_is_early_exit:
                folder = workdir / pair.small
                self.hf_small = build_random_model(pair.small, folder, dtype=dtype_name, device=self.dev,
                                                   seed=settings.seed + 1, tokenizer_from=tok_src)
                self.small_path = str(folder)
            self.tokenizer = None
        else:
            log(f"[bench] loading HF baseline model {pair.large}")
            self.hf_large, self.tokenizer = load_hf_model(pair.large, dtype=self.dtype, device=self.dev)
            if not pair.small_is_early_exit:
                self.hf_small, _ = load_hf_model(pair.small, dtype=self.dtype, device=self.dev)
        dbytes = torch.tensor([], dtype=self.dtype).element_size()
        self.large_shape = shape_from_hf_config(self.hf_large.config, dbytes)
        if pair.small_is_early_exit:
            self.small_shape = shape_from_hf_config(self.hf_large.config, dbytes, pair.early_exit_layers)
        else:
            self.small_shape = shape_from_hf_config(self.hf_small.config, dbytes)
        self.engine = None
        self.engine_error = ""
        self.graph_status: dict = {}

    # --- prompts -------------------------------------------------------------------------------
    def prompts(self, batch: int) -> list[list[int]]:
        if self.tokenizer is not None:
            out = []
            for i in range(batch):
                text = CHAT_PROMPTS[i % len(CHAT_PROMPTS)]
                ids = self.tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                         add_generation_prompt=True, tokenize=True)
                if isinstance(ids, dict) or hasattr(ids, "input_ids"):
                    ids = ids["input_ids"]
                out.append(list(map(int, ids)))
            return out
        g = torch.Generator().manual_seed(self.s.seed)
        hi = min(self.hf_large.config.vocab_size, 49152)
        return [torch.randint(3, hi, (self.s.prompt_len,), generator=g).tolist() for _ in range(batch)]

    # --- engine --------------------------------------------------------------------------------
    def load_engine(self) -> None:
        try:
            from fsgen_engine.engine import Engine
        except ImportError as exc:
            self.engine_error = f"engine not available: {exc}"
            return
        try:
            from fsgen_engine.tp.checks import tp_engine_kwargs

            self.engine = Engine(self.large_path, self.small_path, device=str(self.dev),
                                 dtype=str(self.dtype).replace("torch.", ""),
                                 max_batch=max(self.s.batch_sizes), cuda_graphs=self.s.cuda_graphs,
                                 **tp_engine_kwargs(self.small_path, self.s.tp, self.s.small_tp))
            self.graph_status = dict(self.engine.graph_status)
        except Exception as exc:  # report, keep measuring the baselines
            self.engine_error = f"engine failed to load: {type(exc).__name__}: {exc}"

    # --- measurement -----------------------------------------------------------------------------
    def _timed(self, fn) -> tuple[list[float], list]:
        # Warm-up (lazy init, allocator, caches) needs only a few tokens, not a whole generation.
        for _ in range(self.s.warmup):
            fn(min(4, self.s.max_new_tokens))
        secs, results = [], []
        for _ in range(self.s.runs):
            _sync(self.dev)
            t0 = time.perf_counter()
            res = fn()
            _sync(self.dev)
            secs.append(time.perf_counter() - t0)
            results.append(res)
        return secs, results

    def _row(self, name: str, kind: str, batch: int, secs: list[float], ntok: int) -> Row:
        tps = [ntok / t for t in secs]
        return Row(self.pair.label, name, kind, batch, self.s.max_new_tokens, len(secs), _median(tps), tps,
                   _median(secs))

    def _bandwidth(self, row: Row, prompt_len: float, batch: int, large_steps: float, small_steps: float) -> None:
        ctx = prompt_len + self.s.max_new_tokens / 2
        passes = [(self.large_shape.step_bytes(batch, ctx), large_steps),
                  (self.small_shape.step_bytes(batch, ctx), small_steps)]
        row.bandwidth_gbs = achieved_bandwidth(passes, row.seconds_median) / 1e9

    def run_hf(self, batch: int, assisted: bool) -> Row:
        from fsgen_engine.benchmark.hf import HFGenerate

        prompts = self.prompts(batch)
        name = "hf-assisted" if assisted else "hf"
        if assisted:
            gen = HFGenerate(self.hf_large, assistant_model=self.hf_small,
                             assistant_early_exit=self.pair.early_exit_layers if self.pair.small_is_early_exit else None)
        else:
            gen = HFGenerate(self.hf_large, cache=self.s.hf_cache)
        secs, results = self._timed(lambda n=self.s.max_new_tokens: gen(prompts, n))
        # HFGenerate's own timing excludes the batching copies; use it where it is there.
        secs = [r[1] for r in results]
        ntok = sum(len(r) for r in results[0][0])
        row = self._row(name, name, batch, secs, ntok)
        row.note = gen.note or ("static cache" if gen.cache == "static" else "dynamic cache")
        if not assisted:
            plen = sum(map(len, prompts)) / batch
            self._bandwidth(row, plen, batch, self.s.max_new_tokens, 0)
        return row

    def run_engine(self, label: str, batch: int) -> Row:
        from fsgen_engine.generate_args import generate_kwargs

        kw = dict(DEFAULT_METHODS[label]) if label in DEFAULT_METHODS else _parse_method(label)
        prompts = self.prompts(batch)
        def call(n=self.s.max_new_tokens):
            return self.engine.generate(prompts, **generate_kwargs(max_new_tokens=n, ignore_eos=True, seed=self.s.seed,
                                                                   progress=False, **kw))

        secs, results = self._timed(call)
        outs = results[0]
        ntok = sum(o.stats.total_tokens for o in outs)
        row = self._row(label, "engine", batch, secs, ntok)
        tot = sum(o.stats.total_tokens for o in outs)
        calls = sum(o.stats.large_calls for o in outs)
        mism = sum(o.stats.mismatches for o in outs)
        row.large_call_fraction = calls / tot if tot else None
        row.collaboration_frequency = mism / tot if tot else None
        method = kw.get("method", label)
        if method == "speculative" and calls:
            row.acceptance_length = sum(o.stats.accepted_draft_tokens for o in outs) / calls + 1.0
        # Passes of the batch: rows step together, so the busiest row sets the count.
        large_steps = max((o.stats.total_tokens if method == "large" else
                           (0 if method == "small" else o.stats.large_calls)) for o in outs)
        small_steps = max((0 if method == "large" else
                           (o.stats.draft_tokens if method == "speculative" else o.stats.total_tokens)) for o in outs)
        self._bandwidth(row, sum(map(len, prompts)) / batch, batch, large_steps, small_steps)
        return row


def _parse_method(label: str) -> dict:
    """``method`` or ``method@router`` (e.g. ``oracle@entropy:1.0``; ``speculative@draft_stop=entropy:1.0``)."""
    method, _, router = label.partition("@")
    if router.startswith("draft_stop="):
        return dict(method=method, draft_stop=router.partition("=")[2])
    return dict(method=method, router=router) if router else dict(method=method)


def run_pair(pair: ModelPair, s: Settings, log=print, progress=None) -> tuple[list[Row], list[str]]:
    """Measure every contender for one pair and batch size; returns (rows, notes)."""
    notes = []
    with tempfile.TemporaryDirectory(prefix="fsgen_bench_") as tmp:
        runner = PairRunner(pair, s, Path(tmp), log)
        if s.methods:
            log("[bench] loading the engine")
            runner.load_engine()
            if runner.engine_error:
                notes.append(runner.engine_error)
            elif runner.graph_status:
                notes.append(f"{pair.label}: CUDA graphs " + ", ".join(f"{m}={v}" for m, v in
                                                                        runner.graph_status.items()))
        if pair.random_weights:
            notes.append(f"{pair.label}: random weights (real shapes): speed is representative, acceptance "
                         "length and collaboration are not (the two models barely agree)")
        rows: list[Row] = []
        jobs = [(b, c) for b in s.batch_sizes for c in
                [c for c in ("hf", "hf-assisted") if c in s.baselines] +
                ([m for m in s.methods] if runner.engine is not None else [])]
        for b, c in jobs:
            if progress:
                progress(f"{pair.label} batch {b}: {c}")
            try:
                row = (runner.run_hf(b, c == "hf-assisted") if c.startswith("hf") else runner.run_engine(c, b))
            except Exception as exc:  # one failing contender must not lose the others
                row = Row(pair.label, c, "engine" if not c.startswith("hf") else c, b, s.max_new_tokens, 0,
                          float("nan"), [], float("nan"), error=f"{type(exc).__name__}: {exc}"[:300])
            log(f"[bench] {pair.label} b={b} {c}: {row.tokens_per_s:.1f} tok/s {row.error}")
            rows.append(row)
            if progress:
                progress(None)
        if runner.engine is not None:
            runner.engine.close()   # a tensor-parallel engine's workers, before the next pair starts its own
        _ratios(rows)
        for r in rows:
            if r.note and r.note not in notes and "cache" not in r.note:
                notes.append(r.note)
    return rows, notes


def _ratios(rows: list[Row]) -> None:
    base = {(r.batch, r.contender): r.tokens_per_s for r in rows if r.kind in ("hf", "hf-assisted")}
    for r in rows:
        for key, attr in (("hf", "ratio_vs_hf"), ("hf-assisted", "ratio_vs_hf_assisted")):
            b = base.get((r.batch, key))
            if b and b == b and r.tokens_per_s == r.tokens_per_s:
                setattr(r, attr, r.tokens_per_s / b)


def run_benchmark(model_specs: list[str], s: Settings, log=print, progress=None) -> dict:
    """Run every pair; returns the result document (see report.write_results)."""
    from fsgen_engine.benchmark.bandwidth import measure_copy_bandwidth

    dev, dtype = resolve_device_dtype(s.device, s.dtype)
    nbytes = (1 << 30) if dev.type == "cuda" else (1 << 28)
    copy_bw = measure_copy_bandwidth(dev, nbytes)
    pairs, rows, notes = [], [], []
    for spec in model_specs:
        pair = parse_models_spec(spec, early_exit=s.early_exit)
        pairs.append(asdict(pair))
        r, n = run_pair(pair, s, log, progress)
        rows += r
        notes += n
    for r in rows:
        if r.bandwidth_gbs is not None:
            r.bandwidth_share = r.bandwidth_gbs * 1e9 / copy_bw
    return {
        "settings": asdict(s) | {"device_resolved": str(dev), "dtype_resolved": str(dtype).replace("torch.", "")},
        "copy_bandwidth_gbs": copy_bw / 1e9,
        "copy_bandwidth_note": f"same-device copy of {nbytes >> 20} MiB, read + write bytes counted",
        "pairs": pairs,
        "rows": [asdict(r) for r in rows],
        "notes": notes,
    }
