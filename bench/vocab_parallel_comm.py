"""Vocabulary-parallel logits: gather the logits vs merge per-shard partials (2 ranks, gloo, CPU).

Each rank holds one contiguous half of the vocabulary of the LM head output. Per step, measured on
rank 0 from a barrier to the result:

- token_stats, ``gather``: all_gather of every rank's ``[B, V_r]`` float32 shard, concatenation into
  ``[B, V]`` and ``ops.token_stats`` on rank 0;
  ``merge``: ``ops.token_stats_partial`` on each shard, all_gather of the ``[B, 5]`` float64
  partials, ``ops.merge_token_stats`` on rank 0.
- greedy verify (K+1 = 5 positions), ``gather``: all_gather of ``[B, 5, V_r]`` shards, concatenation
  and ``ops.verify(temperature=0)`` on rank 0; ``merge``: ``ops.argmax_partial`` on each shard,
  all_gather of ``[B, 5, 2]`` float64, ``ops.merge_argmax`` + ``ops.greedy_verify_sharded``.

Both paths' results are checked equal (after timing, on the last step's results), and the two
paths of one op run interleaved, alternating which goes first, so they share the load bursts of a
busy machine. Reported per (op, V, B, path): median / p10 /
p90 microseconds of the whole step and of its all_gather alone, and the bytes of the gathered
tensor per rank (``gathered_bytes``) and received per rank (``received_bytes``, (R-1)/R of it).

Run: ``python bench/vocab_parallel_comm.py [--iters 100] [--out bench/results/vocab_parallel_comm_cpu]``
(writes ``.json`` and ``.md``). Not a test: nothing here asserts a timing.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORLD = 2
VOCABS = (49152, 151936)
BATCHES = (1, 4, 8)
POSITIONS = 5  # K + 1 for greedy verify


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _worker(rank: int, port: int, iters: int, warmup: int, queue) -> None:
    import torch
    import torch.distributed as dist

    from fsgen_engine import ops
    from fsgen_engine.ops.vocab_parallel import PARTIAL_WIDTH

    torch.set_num_threads(1)  # two processes on a two-core machine
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=120))
    records = []

    # torch 2.13 renamed all_gather_into_tensor (deprecated there) to all_gather_single
    gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor

    def timed(steps):
        """Run each ``step(marks) -> result`` of ``steps`` warmup + iters times, interleaved (the order
        alternating every iteration) so that the paths compared share the machine's load bursts; a
        barrier before each step. ``step`` appends perf_counter marks before and after its collective.
        Returns per step the last result and microsecond lists (total, local compute before the
        collective, collective)."""
        out = [[None, [], [], []] for _ in steps]
        for i in range(warmup + iters):
            order = range(len(steps)) if i % 2 == 0 else reversed(range(len(steps)))
            for j in order:
                dist.barrier()
                marks = [time.perf_counter()]
                out[j][0] = steps[j](marks)
                t1 = time.perf_counter()
                if i >= warmup:
                    out[j][1].append((t1 - marks[0]) * 1e6)
                    out[j][2].append((marks[1] - marks[0]) * 1e6)
                    out[j][3].append((marks[2] - marks[1]) * 1e6)
        return out

    for V in VOCABS:
        c = -(-V // WORLD)
        a, b = rank * c, min(V, (rank + 1) * c)
        assert all(min(V, (r + 1) * c) - r * c == c for r in range(WORLD)), "gloo all_gather wants equal shards"
        for B in BATCHES:
            gen = torch.Generator().manual_seed(V + B)  # the same full logits on every rank
            full = torch.randn(B, V, generator=gen) * 4
            full3 = torch.randn(B, POSITIONS, V, generator=gen) * 4
            target = full3.argmax(-1)
            draft = target[:, :POSITIONS - 1].clone()
            draft[::2, 2] = (draft[::2, 2] + 1) % V  # every other row rejects at position 2
            shard = full[:, a:b].contiguous()
            shard3 = full3[..., a:b].contiguous()

            def stats_gather(marks):
                bufs = [torch.empty_like(shard) for _ in range(WORLD)]
                marks.append(time.perf_counter())
                dist.all_gather(bufs, shard)
                marks.append(time.perf_counter())
                return ops.token_stats(torch.cat(bufs, dim=1)) if rank == 0 else None

            def stats_merge(marks):
                part = ops.token_stats_partial(shard, a)
                bufs = torch.empty((WORLD * part.shape[0], *part.shape[1:]), dtype=part.dtype)
                marks.append(time.perf_counter())
                gather_single(bufs, part)  # gloo: concatenated along dim 0
                marks.append(time.perf_counter())
                return ops.merge_token_stats(bufs.view(WORLD, *part.shape)) if rank == 0 else None

            def verify_gather(marks):
                bufs = [torch.empty_like(shard3) for _ in range(WORLD)]
                marks.append(time.perf_counter())
                dist.all_gather(bufs, shard3)
                marks.append(time.perf_counter())
                return ops.verify(draft, torch.cat(bufs, dim=-1), temperature=0.0) if rank == 0 else None

            def verify_merge(marks):
                part = ops.argmax_partial(shard3, a)
                bufs = torch.empty((WORLD * part.shape[0], *part.shape[1:]), dtype=part.dtype)
                marks.append(time.perf_counter())
                gather_single(bufs, part)
                marks.append(time.perf_counter())
                if rank != 0:
                    return None
                return ops.greedy_verify_sharded(draft, ops.merge_argmax(bufs.view(WORLD, *part.shape)))

            cases = [("token_stats", "gather", stats_gather, B * V * 4),
                     ("token_stats", "merge", stats_merge, WORLD * B * PARTIAL_WIDTH * 8),
                     ("greedy_verify", "gather", verify_gather, B * POSITIONS * V * 4),
                     ("greedy_verify", "merge", verify_merge, WORLD * B * POSITIONS * 2 * 8)]
            results = {}
            timings = timed([step for _, _, step, _ in cases[:2]]) + timed([step for _, _, step, _ in cases[2:]])
            for (op, path, _, gathered), (res, total, local, comm) in zip(cases, timings):
                results[(op, path)] = res
                if rank == 0:
                    records.append(dict(op=op, path=path, V=V, B=B, positions=POSITIONS if op == "greedy_verify" else 1,
                                        median_us=statistics.median(total), p10_us=_pct(total, 0.1),
                                        p90_us=_pct(total, 0.9), local_median_us=statistics.median(local),
                                        comm_median_us=statistics.median(comm),
                                        gathered_bytes=gathered, received_bytes=gathered * (WORLD - 1) // WORLD))
            if rank == 0:  # the two paths must agree before their timings mean anything
                g, m = results[("token_stats", "gather")], results[("token_stats", "merge")]
                assert torch.equal(g.argmax, m.argmax)
                for name in ("entropy", "max_prob", "margin", "logsumexp"):
                    torch.testing.assert_close(getattr(m, name), getattr(g, name), rtol=4e-5, atol=4e-6)
                g, m = results[("greedy_verify", "gather")], results[("greedy_verify", "merge")]
                assert torch.equal(g[0], m[0]) and torch.equal(g[1], m[1]), (g, m)
    dist.barrier()
    dist.destroy_process_group()
    if rank == 0:
        queue.put(records)


def _env() -> dict:
    import torch

    def git(*args):
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    return dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                commit=git("rev-parse", "HEAD"), dirty=bool(git("status", "--porcelain", "--untracked-files=no")),
                torch=torch.__version__, python=platform.python_version(), cpu_count=os.cpu_count(),
                processor=platform.processor() or platform.machine(), loadavg_before=list(os.getloadavg()),
                world_size=WORLD, backend="gloo (127.0.0.1)", threads_per_rank=1,
                command="python " + " ".join(sys.argv))


def _markdown(doc: dict) -> str:
    env = doc["env"]
    lines = ["# Vocabulary-parallel logits: gather vs sharded merge (2 ranks, gloo, CPU)", "",
             f"Measured {env['date']} at commit `{(env['commit'] or '?')[:10]}`{' (dirty)' if env['dirty'] else ''}, "
             f"torch {env['torch']}, `{env['command']}`.",
             f"Machine: a loaded 2-core box ({env['processor']}, {env['cpu_count']} cores, shared with other jobs; "
             f"load average {env['loadavg_before'][0]:.1f} before and {env['loadavg_after'][0]:.1f} after the run), "
             "2 processes with 1 thread each, gloo over loopback. Absolute figures are noisy; the ratio is the point.",
             "", "Per step, on rank 0, from a barrier to the result: median microseconds as total = local + comm + "
             "post, where local is the shard reduction before the collective (merge path only), comm the all_gather "
             "(including waiting for the other rank) and post the concatenation + op (gather) or the merge (merge). "
             "Bytes: the gathered tensor on each rank (each rank receives half of it).", "",
             "| op | V | B | gather: total (comm) | merge: total (local / comm) | speed-up | bytes gather / merge |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    recs = {(r["op"], r["V"], r["B"], r["path"]): r for r in doc["records"]}
    for op in ("token_stats", "greedy_verify"):
        for V in VOCABS:
            for B in BATCHES:
                g, m = recs[(op, V, B, "gather")], recs[(op, V, B, "merge")]
                lines.append(f"| {op}{' (K+1=5)' if op == 'greedy_verify' else ''} | {V} | {B} | "
                             f"{g['median_us']:.0f} ({g['comm_median_us']:.0f}) | "
                             f"{m['median_us']:.0f} ({m['local_median_us']:.0f} / {m['comm_median_us']:.0f}) | "
                             f"{g['median_us'] / m['median_us']:.1f}x | "
                             f"{g['gathered_bytes']:,} / {m['gathered_bytes']:,} |")
    slower = [f"{op} V={V} B={B}" for (op, V, B, path), r in recs.items()
              if path == "merge" and r["median_us"] >= recs[(op, V, B, "gather")]["median_us"]]
    lines += ["", f"Merge faster than gather in {2 * len(VOCABS) * len(BATCHES) - len(slower)} of "
              f"{2 * len(VOCABS) * len(BATCHES)} cases" + (f"; not in: {', '.join(slower)}." if slower else "."),
              "The two paths of one op ran interleaved (alternating order). Both paths' results were checked "
              "equal on rank 0 (argmax and greedy verify "
              "exactly, the float statistics within 4e-5 relative)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", default="bench/results/vocab_parallel_comm_cpu",
                    help="path without suffix: writes OUT.json and OUT.md")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the spawned ranks before torch loads

    import torch.multiprocessing as mp

    env = _env()
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    t0 = time.perf_counter()
    mp.spawn(_worker, args=(_free_port(), args.iters, args.warmup, queue), nprocs=WORLD, join=True)
    records = queue.get()
    env.update(loadavg_after=list(os.getloadavg()), wall_s=round(time.perf_counter() - t0, 1),
               iters=args.iters, warmup=args.warmup)
    doc = dict(env=env, records=records)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    out.with_suffix(".md").write_text(_markdown(doc))
    print(_markdown(doc))


if __name__ == "__main__":
    main()
