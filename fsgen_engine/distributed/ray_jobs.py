"""Run independent evaluation jobs (``fsgen_engine.eval.jobs``) on Ray actors.

Each job runs on an actor reserving ``num_gpus`` = the job's tensor-parallel size (1 today) when it
runs on GPUs, else ``num_cpus``; an actor keeps its pair's engine loaded between that pair's jobs and
is killed at the end, which frees its GPU memory (a plain task's reused worker would keep it, on
whichever GPU it first used). Results come back to the driver as bytes and are written into the same
folders and files as the serial run as each task finishes, so an interrupted sweep keeps everything
that finished; a rerun skips jobs whose folder already holds a complete run (``load_done``). A job
that raises (or whose worker dies) is reported and resubmitted up to ``retries`` times while the
others go on; jobs that still fail are returned, not raised, so the caller can write what finished.

Ray's own retries are off (``max_restarts=0``, ``max_task_retries=0``): this loop retries every kind
of failure the same way and reports each attempt.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace

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


class _Runner:
    """A Ray actor running jobs of one model pair: its process keeps the pair's engine loaded between
    jobs (``execute_job``'s cache) and holds the job's GPUs / CPUs until it is killed."""

    def run(self, job: Job):
        return execute_job(job)


def _absolute(job: Job) -> Job:
    """Workers do not share the driver's working directory: make local paths absolute (the model
    names in the records stay as given, as in the serial run)."""
    def fix(p):
        return os.path.abspath(p) if p and os.path.exists(p) else p

    job.cfg.data = fix(job.cfg.data)
    job.cfg.fewshot = fix(job.cfg.fewshot)
    job.pair = replace(job.pair, large=fix(job.pair.large), small=fix(job.pair.small),
                       small_ft=fix(job.pair.small_ft))
    return job


def _capacity(ray, res: dict) -> int:
    """How many runners of this shape the cluster holds at once (at least 1)."""
    total = ray.cluster_resources()
    if res["num_gpus"]:
        return max(1, int(total.get("GPU", 0) // res["num_gpus"]))
    return max(1, int(total.get("CPU", 1) // max(res["num_cpus"], 1e-9)))


def run_ray(jobs: list[Job], address: str | None = None, *, retries: int = 1, cpus_per_job: float = 1.0,
            echo: bool = True, on_done=None) -> RayRun:
    """Run ``jobs`` on Ray (see module doc). ``on_done(job, summary)`` runs in the driver after each
    job's files are written. Shuts down the Ray instance only when this call started it.

    Jobs run on actors (``_Runner``), as many as the cluster's resources hold: a runner takes the next
    job of the pair it has loaded, else the next job (it then loads that pair, after freeing the
    last). A runner that dies is replaced; all are killed at the end."""
    if retries < 0:
        raise ValueError(f"--ray-retries {retries} must be >= 0")
    ray = import_ray()
    summaries, skipped, queue = {}, [], []
    for job in map(_absolute, jobs):
        done = load_done(job)
        if done is not None:
            summaries[job.key] = done
            skipped.append(job.key)
        else:
            queue.append(job)
    if echo and skipped:
        print(f"[ray] resuming: {len(skipped)} of {len(jobs)} job(s) already finished, skipped", flush=True)
    if not queue:
        return RayRun(summaries, skipped, [])
    started = connect(address)
    failures, runners, inflight = [], {}, {}  # runners: id -> [handle, engine key, busy]
    attempts = {job.key: 0 for job in queue}
    try:
        total = ray.cluster_resources()
        gpus = total.get("GPU", 0)
        for job in queue:  # a runner the cluster cannot place would wait forever: refuse up front
            res = resources_for(job, gpus, cpus_per_job)
            if res["num_gpus"] > gpus or res["num_cpus"] > total.get("CPU", 0):
                raise ValueError(f"--ray: job {job.key!r} needs {res['num_gpus']} GPU(s) and {res['num_cpus']} CPU(s) "
                                 f"but the Ray cluster has {gpus:g} GPU(s) and {total.get('CPU', 0):g} CPU(s); "
                                 "use --device cpu, a smaller --ray-cpus-per-job, or a cluster with GPUs")
        runner_cls = ray.remote(max_restarts=0, max_task_retries=0)(_Runner)

        def submit(rid, job):
            attempts[job.key] += 1
            runners[rid][2] = True
            inflight[runners[rid][0].run.remote(job)] = (rid, job)

        def assign():
            # an idle runner takes the next job of its own pair, else the next job (it swaps engines)
            for rid, r in runners.items():
                if r[2] or not queue:
                    continue
                job = next((j for j in queue if j.engine_key() == r[1]), queue[0])
                queue.remove(job)
                r[1] = job.engine_key()
                submit(rid, job)
            while queue:
                res = resources_for(queue[0], gpus, cpus_per_job)
                if len(runners) >= _capacity(ray, res):
                    return
                job = queue.pop(0)
                rid = object()
                runners[rid] = [runner_cls.options(**res).remote(), job.engine_key(), False]
                submit(rid, job)

        while queue or inflight:
            assign()
            ready, _ = ray.wait(list(inflight), num_returns=1)
            rid, job = inflight.pop(ready[0])
            try:
                res = ray.get(ready[0])
            except Exception as exc:  # noqa: BLE001 - any job failure is reported and retried
                if isinstance(exc, ray.exceptions.RayActorError):  # the runner died: replace it
                    runners.pop(rid, None)
                else:
                    runners[rid][2] = False
                err = _describe(exc)
                last = attempts[job.key] > retries
                print(f"[ray] job {job.key!r} failed (attempt {attempts[job.key]}/{retries + 1}): {err}"
                      + ("" if last else "; retrying"), file=sys.stderr, flush=True)
                if last:
                    failures.append(Failure(job.key, attempts[job.key], err))
                else:
                    queue.insert(0, job)
                continue
            runners[rid][2] = False
            store_result(job, res)
            summaries[job.key] = summary_of(res)
            if on_done:
                on_done(job, summaries[job.key])
            if echo:
                print_progress(job, summaries[job.key])
    finally:
        for handle, _, _ in runners.values():
            ray.kill(handle)
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
