"""Quick GPU kernel benchmark of the four logit ops at the goal shapes (issue 10): B=1 and 64,
V=151936, bf16 and fp32, every GPU backend against the torch eager baseline of the same run.

For each (op, dtype, B, backend) it reports
  - ``call_us``: median time of one Python call, CUDA events around it (``triton.testing.do_bench``):
    what an eager caller pays, launch and validation overhead included;
  - ``kernel_us``: median time per call inside a replayed CUDA graph of many calls
    (``do_bench_cudagraph``): the device time alone, as the engine's graphed steps see it;
  - ``GB/s`` and ``share`` of the measured device-to-device copy bandwidth, from ``kernel_us`` (or
    ``call_us`` where the op cannot be captured), counting the bytes the op must read and write once;
  - ``vs_eager``: eager baseline ``call_us`` over this backend's ``call_us`` (same method both sides).
``cuda`` is the default (rows split over many blocks at small batch), ``cuda-1blk`` the same kernels
with one block per row (FSGEN_SPLIT_ROWS=off).
Inputs rotate over enough copies to exceed the L2 cache, so no figure is a cache figure.

    python bench/gpu_kernels.py --out bench/results/kernels_gpu_quick.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "kernels"))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from fsgen_engine.ops import fuse_logits, sample, token_stats, verify  # noqa: E402
from fsgen_engine.ops._dispatch import available_backends  # noqa: E402
from fsgen_engine.ops.sample import SamplingTensors  # noqa: E402
from fsgen_engine.reference.fuse_logits import fuse_logits_reference  # noqa: E402
from fsgen_engine.reference.token_stats import token_stats_reference  # noqa: E402

V = 151936
K = 4
FILTERS = dict(temperature=0.8, top_k=50, top_p=0.9, min_p=0.0)


def copy_bandwidth() -> float:
    """Bytes read + written per second by a large device-to-device copy."""
    import triton.testing as tt

    n = 1 << 30
    src = torch.randint(0, 255, (n,), dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = tt.do_bench(lambda: dst.copy_(src), warmup=25, rep=200, return_mode="median")
    del src, dst
    return 2 * n / (ms * 1e-3)


def rotating(make, nbytes: int, l2: int):
    """Enough input sets to be 3x the L2 (at most 64 and 4 GB), cycled by each call."""
    n = max(1, min(64, math.ceil(3 * l2 / max(nbytes, 1)), (4 << 30) // max(nbytes, 1)))
    sets = [make() for _ in range(n)]
    return itertools.cycle(sets)


def greedy_verify_eager(draft, logits):
    arg = logits.argmax(-1)
    ok = (arg[:, :-1] == draft).to(torch.int64).cumprod(-1)
    acc = ok.sum(-1)
    return acc, arg.gather(1, acc[:, None])[:, 0]


def one_block(fn):
    """``fn`` with the CUDA kernels forced to one block per row (FSGEN_SPLIT_ROWS=off), beside the
    default that splits rows at small batch: both regimes of the ``cuda`` backend in one table."""
    def run():
        old = os.environ.get("FSGEN_SPLIT_ROWS")
        os.environ["FSGEN_SPLIT_ROWS"] = "off"
        try:
            return fn()
        finally:
            if old is None:
                os.environ.pop("FSGEN_SPLIT_ROWS")
            else:
                os.environ["FSGEN_SPLIT_ROWS"] = old
    return run


def with_one_block(impls):
    if "cuda" in impls:
        impls["cuda-1blk"] = one_block(impls["cuda"])
    return impls


def cases(dev, l2):
    """(op, dtype, B, bytes, {impl: fn}) for every goal shape."""
    from bench_sample import sample_eager_fp32
    from bench_verify import verify_eager_fp32
    from bench_fuse_logits import WEIGHTS

    for dtype in (torch.bfloat16, torch.float32):
        es = torch.tensor([], dtype=dtype).element_size()
        for B in (1, 64):
            # token_stats: read B x V, write 5 values per row
            it = rotating(lambda: (torch.randn(B, V, device=dev) * 4).to(dtype), B * V * es, l2)
            impls = {b: (lambda b=b: token_stats(next(it), backend=b))
                     for b in available_backends(dev, native="token_stats", triton_kernel=True) if b != "reference"}
            impls["eager"] = lambda: token_stats_reference(next(it))
            yield "token_stats", dtype, B, B * V * es + B * 24, with_one_block(impls)

            it2 = rotating(lambda: ((torch.randn(B, V, device=dev) * 3).to(dtype),
                                    (torch.randn(B, V, device=dev) * 3).to(dtype)), 2 * B * V * es, l2)
            impls = {b: (lambda b=b: fuse_logits(*next(it2), method="contrastive", backend=b))
                     for b in available_backends(dev, native="fuse_logits", triton_kernel=True) if b != "reference"}
            impls["eager"] = lambda: fuse_logits_reference(*next(it2), None, *WEIGHTS)
            yield "fuse_logits", dtype, B, B * V * (2 * es + 4), with_one_block(impls)

            params = SamplingTensors.prepare(B, dev, **FILTERS)
            it3 = rotating(lambda: (torch.randn(B, V, device=dev) * 4).to(dtype), B * V * es, l2)
            impls = {b: (lambda b=b: sample(next(it3), params=params, backend=b))
                     for b in available_backends(dev, native="sample", triton_kernel=True) if b != "reference"}
            impls["eager"] = lambda: sample_eager_fp32(next(it3), params.temperature, params.top_k, params.top_p,
                                                       params.min_p)
            yield "sample", dtype, B, B * V * es + B * 8, with_one_block(impls)

            def make_verify():
                logits = (torch.randn(B, K + 1, V, device=dev) * 4).to(dtype)
                q = torch.softmax(logits[:, :K].float() / 0.8 + torch.randn(B, K, V, device=dev) * 0.1, dim=-1)
                return logits[:, :K].float().argmax(-1), logits, q
            nd = torch.full((B,), K, dtype=torch.int64, device=dev)
            it4 = rotating(make_verify, B * (K + 1) * V * es + B * K * V * 4, l2)
            avail = [b for b in available_backends(dev, native="verify", triton_kernel=True) if b != "reference"]

            def vg(b):
                d, lg, _ = next(it4)
                return verify(d, lg, num_draft=nd, backend=b, _validated=True)

            def vs(b):
                d, lg, q = next(it4)
                return verify(d, lg, draft_probs=q, num_draft=nd, params=params, backend=b, _validated=True)
            impls = {b: (lambda b=b: vg(b)) for b in avail}
            impls["eager"] = lambda: greedy_verify_eager(*next(it4)[:2])
            yield "verify_greedy", dtype, B, B * (K + 1) * V * es, with_one_block(impls)
            impls = {b: (lambda b=b: vs(b)) for b in avail}
            impls["eager"] = lambda: verify_eager_fp32(*next(it4), nd, params.temperature, params.top_k,
                                                       params.top_p, params.min_p)
            yield "verify_sampled", dtype, B, B * (K + 1) * V * es + B * K * V * 4, with_one_block(impls)


def main() -> int:
    import triton
    import triton.testing as tt

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench/results/kernels_gpu_quick.json")
    ap.add_argument("--command", default=" ".join(sys.argv))
    ap.add_argument("--dry", action="store_true", help="call every case once on the CPU at V=1000 (a check "
                    "of this script, no timing)")
    args = ap.parse_args()
    if args.dry:
        global V
        V = 1000
        for op, dtype, B, _, impls in cases(torch.device("cpu"), 1 << 20):
            for impl, fn in impls.items():
                fn()
                fn()
        print("dry run: every case ran once on the CPU")
        return 0
    if not torch.cuda.is_available():
        print("no GPU: this benchmark measures GPU kernels only")
        return 2
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    l2 = int(getattr(props, "L2_cache_size", 50 << 20))
    bw = copy_bandwidth()
    print(f"copy bandwidth {bw / 1e9:.0f} GB/s on {props.name} ({props.multi_processor_count} SMs, L2 {l2 >> 20} MiB)")
    rows = []
    for op, dtype, B, nbytes, impls in cases(dev, l2):
        base = None
        for impl, fn in sorted(impls.items(), key=lambda kv: kv[0] != "eager"):
            row = dict(op=op, dtype=str(dtype).replace("torch.", ""), B=B, V=V, impl=impl, bytes=nbytes)
            try:
                fn()
                torch.cuda.synchronize()
                row["call_us"] = 1e3 * tt.do_bench(fn, warmup=10, rep=60, return_mode="median")
            except Exception as exc:  # one failing backend must not lose the table
                row["error"] = f"{type(exc).__name__}: {exc}"[:300]
                rows.append(row)
                print(op, row["dtype"], B, impl, "ERROR", row["error"])
                continue
            if impl != "eager":
                try:
                    row["kernel_us"] = 1e3 * tt.do_bench_cudagraph(fn, rep=60, return_mode="median")
                except Exception as exc:
                    row["graph_error"] = f"{type(exc).__name__}: {exc}"[:200]
            t = row.get("kernel_us") or row["call_us"]
            row["GB/s"] = nbytes / (t * 1e-6) / 1e9
            row["share"] = nbytes / (t * 1e-6) / bw
            if impl == "eager":
                base = row["call_us"]
            elif base:
                row["vs_eager"] = base / row["call_us"]
            rows.append(row)
            torch.cuda.synchronize()
    doc = dict(device=props.name, sms=props.multi_processor_count, copy_bandwidth_gbs=bw / 1e9,
               torch=torch.__version__, triton=triton.__version__, cuda=torch.version.cuda,
               python=platform.python_version(), commit=os.environ.get("FSGEN_COMMIT", ""),
               command=args.command, rows=rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"{'op':15} {'dtype':8} {'B':>3} {'impl':9} {'call_us':>8} {'kern_us':>8} {'GB/s':>7} {'share':>6} {'x eager':>7}")
    for r in rows:
        if "error" in r:
            print(f"{r['op']:15} {r['dtype']:8} {r['B']:>3} {r['impl']:9} ERROR {r['error'][:60]}")
            continue
        print(f"{r['op']:15} {r['dtype']:8} {r['B']:>3} {r['impl']:9} {r['call_us']:8.1f} "
              f"{r.get('kernel_us', float('nan')):8.1f} {r['GB/s']:7.0f} {r['share']:6.1%} "
              f"{r.get('vs_eager', float('nan')):7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
