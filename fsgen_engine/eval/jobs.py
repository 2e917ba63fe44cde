"""Independent evaluation jobs (model pair x data set x method x router) for sweeps and evals.

A :class:`Job` is everything one ``run_eval`` needs, picklable, so the same job runs in this process
(serial) or in a Ray worker (``fsgen_engine.distributed.ray_jobs``). :func:`execute_job` returns the
files ``run_eval`` wrote as bytes, so a worker on another node does not need the driver's file
system; :func:`store_result` writes them into the job's folder, ``summary.json`` last and atomically,
which makes ``summary.json`` the job's completion mark: :func:`load_done` finds finished jobs of an
interrupted run so a rerun skips them.
"""
from __future__ import annotations

import copy
import json
import os
import tempfile
from dataclasses import dataclass, field

from .runner import EvalConfig

DONE_FILE = "summary.json"
FILES = ("traces.jsonl", "records.jsonl", "results.jsonl")  # written before DONE_FILE


@dataclass(frozen=True)
class Pair:
    """One (large, small) model pair; ``large_params`` / ``small_params`` are nominal counts (``7B``)
    for the scaling law; ``label`` names its output folder in a multi-pair sweep."""

    large: str
    small: str
    small_ft: str | None = None
    large_params: str | None = None
    small_params: str | None = None
    label: str = ""

    def name(self) -> str:
        if self.label:
            return self.label
        base = lambda p: os.path.basename(os.path.normpath(p)) or p  # noqa: E731
        return f"{base(self.large)}+{base(self.small)}".replace(":", "").replace("/", "_")


@dataclass
class Job:
    """One run_eval call: ``cfg`` carries the data set, method, router and decoding settings;
    ``engine_kwargs`` the Engine options (device, dtype, kv_memory, ...); ``out_dir`` its folder."""

    pair: Pair
    cfg: EvalConfig
    engine_kwargs: dict = field(default_factory=dict)
    out_dir: str | None = None

    @property
    def key(self) -> str:
        return f"{self.pair.name()} {self.cfg.dataset} {self.cfg.method} {self.cfg.router}"

    def engine_key(self) -> tuple:
        return (self.pair.large, self.pair.small, self.pair.small_ft, tuple(sorted(self.engine_kwargs.items())))


@dataclass
class JobResult:
    key: str
    summary: dict
    files: dict[str, bytes]


def run_dir(out_dir: str, method: str, router: str) -> str:
    """The folder of one (method, router) run, as the serial sweep has always named it."""
    return os.path.join(out_dir, f"{method}_{router.replace(':', '_').replace('/', '_')}")


def make_job(pair: Pair, base_cfg: EvalConfig, method: str, router: str, engine_kwargs: dict,
             out_dir: str | None) -> Job:
    cfg = copy.deepcopy(base_cfg)
    cfg.method, cfg.router = method, router
    cfg.large, cfg.small = pair.large, pair.small
    cfg.large_params, cfg.small_params = pair.large_params, pair.small_params
    return Job(pair, cfg, dict(engine_kwargs), out_dir)


_ENGINE: list = []  # [(engine_key, Engine)]: one engine per process, reused by that pair's next jobs


def _engine_for(job: Job):
    from fsgen_engine.engine import Engine

    key = job.engine_key()
    if _ENGINE and _ENGINE[0][0] == key:
        return _ENGINE[0][1]
    release_engine()
    eng = Engine(job.pair.large, job.pair.small, job.pair.small_ft, **job.engine_kwargs)
    _ENGINE.append((key, eng))
    return eng


def release_engine() -> None:
    """Drop the cached engine (its weights and KV pool) before loading another pair."""
    if _ENGINE:
        _ENGINE[0][1].close()   # tensor-parallel workers stop now
        _ENGINE.clear()
        import gc

        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


def execute_job(job: Job) -> JobResult:
    """Run one job in this process; returns its summary and the bytes of the files run_eval wrote."""
    from .runner import run_eval

    engine = _engine_for(job)
    with tempfile.TemporaryDirectory(prefix="fsgen_job_") as tmp:
        summary = run_eval(engine, job.cfg, tmp, echo=False)
        files = {}
        for name in (*FILES, DONE_FILE):
            path = os.path.join(tmp, name)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    files[name] = f.read()
    return JobResult(job.key, summary, files)


def store_result(job: Job, result: JobResult) -> None:
    """Write a finished job's files into its folder; DONE_FILE last, by rename (never half written)."""
    if not job.out_dir:
        return
    os.makedirs(job.out_dir, exist_ok=True)
    for name, data in result.files.items():
        if name == DONE_FILE:
            continue
        with open(os.path.join(job.out_dir, name), "wb") as f:
            f.write(data)
    if DONE_FILE in result.files:
        tmp = os.path.join(job.out_dir, DONE_FILE + ".part")
        with open(tmp, "wb") as f:
            f.write(result.files[DONE_FILE])
        os.replace(tmp, os.path.join(job.out_dir, DONE_FILE))


def load_done(job: Job) -> dict | None:
    """The summary of a job whose folder already holds a complete run with the same config, else None."""
    if not job.out_dir:
        return None
    path = os.path.join(job.out_dir, DONE_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    from dataclasses import asdict

    # a folder left by a run with other settings (n, seed, decoding, models) is not this job's result
    if json.loads(json.dumps(asdict(job.cfg), default=str)) != data.get("config"):
        return None
    data.pop("config", None)
    return data


def run_serial(jobs: list[Job], *, echo: bool = True, on_done=None) -> dict[str, dict]:
    """Run jobs one after another in this process (no resume: every job runs, as the serial sweep
    always has); ``on_done(job, summary)`` is called after each. Returns key -> summary."""
    out = {}
    try:
        for job in jobs:
            res = execute_job(job)
            store_result(job, res)
            out[job.key] = summary_of(res)
            if on_done:
                on_done(job, out[job.key])
            if echo:
                print_progress(job, out[job.key])
    finally:
        release_engine()
    return out


def summary_of(res: JobResult) -> dict:
    return dict(res.summary)


def print_progress(job: Job, r: dict, note: str = "") -> None:
    acc = "n/a" if r.get("accuracy") is None else f"{r['accuracy']:.3f}"
    print(f"[sweep] {job.pair.name():<24s} {job.cfg.method:>12s} {job.cfg.router:<20s} acc={acc} "
          f"large_frac={r['large_call_fraction']:.3f} tok/s={r['tokens_per_s']:.1f}{note}", flush=True)
