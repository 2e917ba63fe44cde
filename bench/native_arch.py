"""What ``-march=native`` is worth for the C++ CPU kernels of ``fsgen_engine._C`` (docs/build.md).

Builds ``_C`` twice from this checkout (portable, the default, and ``FSGEN_NATIVE_ARCH=1``) into a
scratch folder, then times the CPU backend of each op at the target shapes in fresh subprocesses,
alternating the two builds round after round on one thread, and keeps each op's fastest time per
build (the minimum is the figure least disturbed by other load on a shared machine):

    python bench/native_arch.py --rounds 4 --json bench/results/native_arch_cpu.json

Shapes: B=16, V=151936 fp32 for token_stats / fuse_logits / sample / verify (K=4, the kernel
benchmarks' target shape); paged attention decode and K+1=5 verification at batch 8, context 2048,
H=32, Hkv=8, D=128 fp32 (bench/kernels/bench_paged_attention.py's largest CPU case).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Run in a subprocess whose sys.path puts a copy of the package with one build of _C first.
TIMER = r'''
import json, sys, time
import torch
torch.set_num_threads(1)
from fsgen_engine import _C
from fsgen_engine.ops import token_stats, fuse_logits, sample, verify, paged_attention
from fsgen_engine.ops.sample import SamplingTensors
assert _C.__file__.startswith(sys.argv[1]), _C.__file__
reps = int(sys.argv[2])
g = torch.Generator().manual_seed(0)
B, V, K = 16, 151936, 4
x = torch.randn(B, V, generator=g) * 4
y = torch.randn(B, V, generator=g) * 4
params = SamplingTensors.prepare(B, "cpu", temperature=0.8, top_k=50, top_p=0.9, min_p=0.0)
target = torch.randn(B, K + 1, V, generator=g) * 4
q = torch.softmax(torch.randn(B, K, V, generator=g), -1)
draft = torch.randint(0, V, (B, K), generator=g)
nd = torch.full((B,), K)
H, HKV, D, PAGE, BATCH, CTX = 32, 8, 128, 16, 8, 2048
P = BATCH * CTX // PAGE
kc = torch.randn(P, PAGE, HKV, D, generator=g)
vc = torch.randn(P, PAGE, HKV, D, generator=g)
pt = torch.randperm(P, generator=g).to(torch.int32).view(BATCH, -1)
sl = torch.full((BATCH,), CTX, dtype=torch.int32)
def attn(q_len):
    qq = torch.randn(BATCH * q_len, H, D, generator=g)
    cu = torch.arange(BATCH + 1, dtype=torch.int32) * q_len
    return lambda: paged_attention(qq, kc, vc, pt, sl, cu, scale=D ** -0.5, max_q_len=q_len, max_seq_len=CTX,
                                   backend="cpu")
cases = {
    "token_stats B16 V151936 fp32": lambda: token_stats(x, backend="cpu"),
    "fuse_logits B16 V151936 fp32": lambda: fuse_logits(x, y, method="contrastive", alpha=0.1, beta=0.5,
                                                        backend="cpu"),
    "sample B16 V151936 fp32 (top-k 50, top-p 0.9)": lambda: sample(x, params=params, backend="cpu"),
    "verify B16 K4 V151936 fp32 (sampled)": lambda: verify(draft, target, draft_probs=q, num_draft=nd,
                                                           params=params, backend="cpu"),
    "paged_attention decode B8 ctx2048": attn(1),
    "paged_attention verify K+1=5 B8 ctx2048": attn(5),
}
out = {}
for name, fn in cases.items():
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    out[name] = best * 1e3
print(json.dumps(out))
'''


def build(variant: str, native: bool, scratch: Path) -> Path:
    """Build _C into scratch/variant/fsgen_engine (with a copy of the Python package beside it)."""
    dest = scratch / variant
    shutil.copytree(ROOT / "fsgen_engine", dest / "fsgen_engine",
                    ignore=shutil.ignore_patterns("_C*.so", "__pycache__"))
    env = {**os.environ, "FSGEN_BUILD_CUDA": "0", "FSGEN_NATIVE_ARCH": "1" if native else "0"}
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(scratch / f"{variant}_lib"),
                    "--build-temp", str(scratch / f"{variant}_tmp")], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    (so,) = (scratch / f"{variant}_lib" / "fsgen_engine").glob("_C*.so")
    shutil.copy(so, dest / "fsgen_engine" / so.name)
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4, help="alternations of the two builds")
    ap.add_argument("--reps", type=int, default=10, help="timed calls per op per round (the minimum is kept)")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        trees = {"portable": build("portable", False, scratch), "native": build("native", True, scratch)}
        runs: dict[str, list[dict]] = {v: [] for v in trees}
        loads = []
        for r in range(a.rounds):
            for variant, tree in trees.items():
                loads.append(os.getloadavg()[0])
                env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
                proc = subprocess.run([sys.executable, "-c", TIMER, str(tree), str(a.reps)], env=env, cwd=tmp,
                                      capture_output=True, text=True, check=True)
                runs[variant].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(f"round {r + 1} {variant}: done (load {loads[-1]:.1f})", file=sys.stderr)
    best = {v: {k: min(run[k] for run in rs) for k in rs[0]} for v, rs in runs.items()}
    rows = [{"op": k, "portable_ms": round(best["portable"][k], 3), "native_ms": round(best["native"][k], 3),
             "native_speedup": round(best["portable"][k] / best["native"][k], 3)} for k in best["portable"]]
    print(f"{'op':48s} {'portable ms':>12s} {'native ms':>10s} {'native speed-up':>16s}")
    for row in rows:
        print(f"{row['op']:48s} {row['portable_ms']:12.2f} {row['native_ms']:10.2f} {row['native_speedup']:15.2f}x")
    if a.json:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
        Path(a.json).write_text(json.dumps({
            "command": "python bench/native_arch.py " + " ".join(sys.argv[1:]), "commit": commit,
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "cpu": cpu, "machine": platform.machine(),
            "threads": 1, "rounds": a.rounds, "reps": a.reps, "load_average_1min": loads, "rows": rows,
            "runs_ms": runs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
