"""Run independent evaluation jobs (``fsgen_engine.eval.jobs``) as Ray tasks.

Each job is one task reserving ``num_gpus`` = the job's tensor-parallel size (1 today) when it runs
on GPUs, else ``num_cpus``. Results come back to the driver as bytes and are written into the same
folders and files as the serial run as each task finishes, so an interrupted sweep keeps everything
that finished; a rerun skips jobs whose folder already holds a complete run (``load_done``). A job
that raises (or whose worker dies) is reported and resubmitted up to ``retries`` times while the
others go on; jobs that still fail are returned, not raised, so the caller can write what finished.

Ray's own task retries are off (``max_retries=0``): this loop retries every kind of failure the same
way and reports each attempt.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from fsgen_engine.eval.jobs import Job, execute_job, load_done, print_progress, store_result, summary_of

INSTALL_HINT = "Ray is not installed: `pip install .[distributed]` (or `pip install ray`)"


def import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError(f"--ray: {INSTALL_HINT}") from None
    return ray


@dataclass
class Failure:
    key: str
    attempts: int
    error: str


@dataclass
class RayRun:
    """What a Ray run did: key -> summary of finished jobs (run now or earlier), the keys skipped
    because an earlier run finished them, and the jobs that failed every attempt."""

    summaries: dict
    skipped: list
    failures: list


def connect(address: str | None):
    """Use the Ray instance this process is already connected to, else connect to ``address``
    (``None`` or ``"local"``: start a local instance). Returns True when this call started it (the
    caller then shuts it down with ``ray.shutdown()``)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    kw = {"include_dashboard": False, "log_to_driver": True}
    if address in (None, "", "local"):
        ray.init(**kw)
    else:
        ray.init(address=address, **kw)
    return True


def resources_for(job: Job, cluster_gpus: float, cpus_per_job: float = 1.0) -> dict:
    """``num_gpus`` = the job's TP size on GPU jobs, 0 with ``num_cpus`` on CPU jobs.

    A job is a GPU job when its device is ``cuda*``, or unset while the cluster has GPUs."""
    device = str(job.engine_kwargs.get("device") or "")
    tp = int(job.engine_kwargs.get("tensor_parallel", 1) or 1)
    on_gpu = device.startswith("cuda") or (device in ("", "auto") and cluster_gpus > 0)
    if on_gpu:
        return {"num_gpus": tp, "num_cpus": cpus_per_job}
    return {"num_gpus": 0, "num_cpus": cpus_per_job}


def _remote_execute(job: Job):
    return execute_job(job)


def _absolute(job: Job) -> Job:
    """Workers do not share the driver's working directory: make local paths absolute."""
    def fix(p):
        return os.path.abspath(p) if p and os.path.exists(p) else p

    job.cfg.data = fix(job.cfg.data)
    job.cfg.fewshot = fix(job.cfg.fewshot)
    return job


def run_ray(jobs: list[Job], address: str | None = None, *, retries: int = 1, cpus_per_job: float = 1.0,
            echo: bool = True, on_done=None) -> RayRun:
    """Run ``jobs`` on Ray (see module doc). ``on_done(job, summary)`` runs in the driver after each
    job's files are written. Shuts down the Ray instance only when this call started it."""
    if retries < 0:
        raise ValueError(f"--ray-retries {retries} must be >= 0")
    ray = import_ray()
    summaries, skipped, todo = {}, [], []
    for job in jobs:
        done = load_done(job)
        if done is not None:
            summaries[job.key] = done
            skipped.append(job.key)
        else:
            todo.append(_absolute(job))
    if echo and skipped:
        print(f"[ray] resuming: {len(skipped)} of {len(jobs)} job(s) already finished, skipped", flush=True)
    if not todo:
        return RayRun(summaries, skipped, [])
    started = connect(address)
    failures = []
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        task = ray.remote(max_retries=0)(_remote_execute)
        attempts = {job.key: 0 for job in todo}
        pending = {}

        def submit(job):
            attempts[job.key] += 1
            ref = task.options(**resources_for(job, gpus, cpus_per_job), name=job.key).remote(job)
            pending[ref] = job

        for job in todo:
            submit(job)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                res = ray.get(ready[0])
            except Exception as exc:  # noqa: BLE001 - any task failure is reported and retried
                err = _describe(exc)
                last = attempts[job.key] > retries
                print(f"[ray] job {job.key!r} failed (attempt {attempts[job.key]}/{retries + 1}): {err}"
                      + ("" if last else "; retrying"), file=sys.stderr, flush=True)
                if last:
                    failures.append(Failure(job.key, attempts[job.key], err))
                else:
                    submit(job)
                continue
            store_result(job, res)
            summaries[job.key] = summary_of(res)
            if on_done:
                on_done(job, summaries[job.key])
            if echo:
                print_progress(job, summaries[job.key])
    finally:
        if started:
            ray.shutdown()
    return RayRun(summaries, skipped, failures)


def _describe(exc: Exception) -> str:
    """The original exception of a Ray task error (type and message), else the error itself."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[-1] if first else ''}"
