"""Speed-quality frontier per model pair on one data set.

Runs the ``large`` and ``small`` baselines and every (method, router threshold), then plots accuracy
against the large-call fraction and against tokens/s, baselines as reference points, and writes
the same numbers as a table (frontier.md / frontier.csv) next to frontier.png. ``run_sweep`` runs
one pair on an engine in this process (as always); ``run_sweep_jobs`` runs several pairs as
independent jobs (``jobs.py``), serially or on Ray, and adds the cross-pair outputs (``pairs.py``).
"""
from __future__ import annotations

import copy
import json
import os

DEFAULT_ROUTERS = ["max_prob:0.3,0.5,0.7", "margin:0.1,0.2,0.4", "entropy:0.5,1.0,2.0"]
COLUMNS = ("method", "router", "accuracy", "accuracy_research", "large_call_fraction",
           "collaboration_frequency", "tokens_per_s", "total_tokens", "wall_time_s")


def parse_routers(specs: list[str]) -> list[str]:
    """``["max_prob:0.3,0.5", "learned:PATH", "always"]`` -> ``["max_prob:0.3", "max_prob:0.5",
    "learned:PATH", "always"]``."""
    out = []
    for spec in specs:
        for part in spec.split() if " " in spec else [spec]:
            name, _, args = part.partition(":")
            if not name:
                raise ValueError(f"--routers entry {part!r} has no router name; write e.g. max_prob:0.3,0.5")
            if name in ("learned", "svm") or not args:
                out.append(part)
                continue
            for t in args.split(","):
                try:
                    float(t)
                except ValueError:
                    raise ValueError(f"--routers {part!r}: threshold {t!r} is not a number") from None
                out.append(f"{name}:{t}")
    return out


def parse_methods(spec: str | list[str]) -> list[str]:
    items = spec.split(",") if isinstance(spec, str) else [m for s in spec for m in s.split(",")]
    out = [m.strip() for m in items if m.strip()]
    if not out:
        raise ValueError("--methods is empty; write e.g. oracle,contrastive")
    return out


def run_sweep(engine, base_cfg, methods: list[str], routers: list[str], out_dir: str | None = None,
              *, echo: bool = True, draft_stops: list[str] = ()) -> list[dict]:
    """Run baselines + every (method, router); returns one summary dict per run. ``draft_stops``
    (``parse_routers`` form, e.g. ``entropy:1.0``) adds speculative decoding with plain K and with each
    ``draft_stop`` rule (its row's ``router`` is the rule, ``draft_stop`` set)."""
    from .runner import run_eval

    if base_cfg.dataset == "mtbench":
        raise ValueError("--dataset mtbench has no accuracy (generation only); sweep a scored data set")
    runs = [("large", "always"), ("small", "never")] + [(m, r) for m in methods for r in routers]
    if draft_stops:
        runs += [("speculative", "never")] + [("speculative", f"draft_stop={d}") for d in draft_stops]
    rows = []
    for method, router in runs:
        cfg = copy.deepcopy(base_cfg)
        cfg.method, cfg.router = method, router
        stop = router.partition("draft_stop=")[2] or None
        if stop:
            cfg.router, cfg.gen_kwargs = "always", {**cfg.gen_kwargs, "draft_stop": stop}
        sub = os.path.join(out_dir, f"{method}_{router.replace(':', '_').replace('/', '_')}") if out_dir else None
        rows.append(run_eval(engine, cfg, sub, echo=False))
        if stop:
            rows[-1].update(router=stop, draft_stop=stop)
        if echo:
            r = rows[-1]
            print(f"[sweep] {method:>12s} {router:<20s} acc={_f(r['accuracy'])} "
                  f"large_frac={r['large_call_fraction']:.3f} tok/s={r['tokens_per_s']:.1f}", flush=True)
    if out_dir:
        write_frontier(rows, out_dir, echo=echo)
    return rows


def sweep_runs(methods: list[str], routers: list[str], *, with_always: bool = False) -> list[tuple[str, str]]:
    """Baselines, then every (method, router); ``with_always`` adds (method, always) where missing
    (collaboration frequency is defined under ``always``)."""
    runs = [("large", "always"), ("small", "never")] + [(m, r) for m in methods for r in routers]
    if with_always:
        runs += [(m, "always") for m in methods if (m, "always") not in runs]
    return runs


def plan_jobs(pairs, base_cfg, methods: list[str], routers: list[str], out_dir: str | None,
              engine_kwargs: dict) -> list:
    """One job per pair x (method, router). One pair: folders as the serial sweep names them under
    ``out_dir``; several: under ``out_dir/<pair>/``, with (method, always) added for each method."""
    from .jobs import make_job, run_dir

    if base_cfg.dataset == "mtbench":
        raise ValueError("--dataset mtbench has no accuracy (generation only); sweep a scored data set")
    multi = len(pairs) > 1
    jobs = []
    for pair in pairs:
        pair_dir = (os.path.join(out_dir, pair.name()) if multi else out_dir) if out_dir else None
        for method, router in sweep_runs(methods, routers, with_always=multi):
            jobs.append(make_job(pair, base_cfg, method, router, engine_kwargs,
                                 run_dir(pair_dir, method, router) if pair_dir else None))
    return jobs


def run_sweep_jobs(pairs, base_cfg, methods: list[str], routers: list[str], out_dir: str | None,
                   engine_kwargs: dict, *, ray_address: str | None = None, use_ray: bool = False,
                   retries: int = 1, cpus_per_job: float = 1.0, echo: bool = True):
    """The sweep of several pairs, serial or on Ray (``fsgen_engine.distributed.ray_jobs``).

    Every job's files are written as it finishes, and the pair's frontier table is rewritten then
    (the figure once at the end). Returns ``(rows_by_pair, failures)``; with several pairs also
    writes the collaboration frequency per pair and the scaling-law fit (``eval/pairs.py``)."""
    from .jobs import run_serial
    from .pairs import write_pairs_summary

    jobs = plan_jobs(pairs, base_cfg, methods, routers, out_dir, engine_kwargs)
    multi = len(pairs) > 1
    done: dict[str, dict] = {}

    def pair_rows(name: str) -> list[dict]:
        return [done[j.key] for j in jobs if j.pair.name() == name and j.key in done]

    def pair_dir(name: str) -> str | None:
        return (os.path.join(out_dir, name) if multi else out_dir) if out_dir else None

    def on_done(job, summary):
        done[job.key] = summary
        if out_dir:
            write_frontier(pair_rows(job.pair.name()), pair_dir(job.pair.name()), echo=False, plot=False)

    failures = []
    if use_ray:
        from fsgen_engine.distributed.ray_jobs import run_ray

        res = run_ray(jobs, ray_address, retries=retries, cpus_per_job=cpus_per_job, echo=echo, on_done=on_done)
        done.update(res.summaries)
        failures = res.failures
    else:
        run_serial(jobs, echo=echo, on_done=on_done)
    rows_by_pair = {p.name(): pair_rows(p.name()) for p in pairs}
    for p in pairs:
        if rows_by_pair[p.name()] and out_dir:
            write_frontier(rows_by_pair[p.name()], pair_dir(p.name()), echo=echo)
    if multi:
        write_pairs_summary(pairs, rows_by_pair, methods, out_dir, echo=echo)
    return rows_by_pair, failures


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _threshold(router: str) -> str:
    return router.partition(":")[2]


def write_frontier(rows: list[dict], out_dir: str, *, echo: bool = True, plot: bool = True) -> str:
    """frontier.md/.csv/.json (and frontier.png when ``plot``) of one pair's runs in ``out_dir``."""
    from fsgen_engine.analysis.report import new_figure, save_figure, write_table

    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, "frontier")
    table = [[r.get(c) if r.get(c) is not None else float("nan") for c in COLUMNS] for r in rows]
    write_table(stem, f"Speed-quality frontier ({rows[0]['dataset']})", COLUMNS, table, echo=echo)
    with open(stem + ".json", "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=2, default=str)
    if not plot:
        return stem + ".md"

    fig, (ax1, ax2) = new_figure(13, 5, ncols=2)
    base = {r["method"]: r for r in rows if r["method"] in ("large", "small")}
    series: dict[str, list[dict]] = {}
    for r in rows:
        if r["method"] in ("large", "small"):
            continue
        series.setdefault(f"{r['method']} / {r['router'].partition(':')[0]}", []).append(r)
    for ax, xkey, xlabel in ((ax1, "large_call_fraction", "large-model calls / tokens"),
                             (ax2, "tokens_per_s", "throughput (tokens/s)")):
        for label, pts in series.items():
            pts = sorted(pts, key=lambda r: r[xkey])
            xs = [p[xkey] for p in pts]
            ys = [p["accuracy"] if p["accuracy"] is not None else float("nan") for p in pts]
            ax.plot(xs, ys, marker="o", label=label)
            for p, x, y in zip(pts, xs, ys):
                if _threshold(p["router"]):
                    ax.annotate(_threshold(p["router"]), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        for name, marker, color in (("large", "*", "tab:red"), ("small", "s", "tab:gray")):
            if name in base and base[name]["accuracy"] is not None:
                b = base[name]
                ax.scatter([b[xkey]], [b["accuracy"]], marker=marker, s=160, color=color, zorder=5,
                           label=f"{name} only ({b['accuracy']:.3f})")
                ax.axhline(b["accuracy"], color=color, ls=":", lw=0.8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax1.set_title("Accuracy vs large-model call fraction")
    ax2.set_title("Accuracy vs speed")
    name = lambda k: os.path.basename(str(rows[0].get(k, "")).rstrip("/")) or str(rows[0].get(k, ""))  # noqa: E731
    fig.suptitle(f"Speed-quality frontier: large {name('large')} + small {name('small')} "
                 f"on {rows[0]['dataset']} (n={rows[0]['n']})", fontsize=10)
    return save_figure(fig, stem)
