"""Without a GPU the Triton kernels only run under the interpreter (TRITON_INTERPRET=1), which never runs
Triton's compiler: a kernel that the interpreter accepts may still fail to compile, or spill, on a GPU.
So every kernel of kernels/*.py is compiled here ahead of time for Hopper (sm_90) down to a cubin (Triton's
bundled ptxas), with the signatures, constexprs and num_warps its ``*_triton`` launcher passes on a GPU.

How (see tests/toolchain/_triton_aot_sm90.py): each case calls a real launcher on fake CUDA tensors and records
its ``kernel[grid](...)`` calls; the records are specialized as a real launch would be and compiled with
``triton.compile(ASTSource(...), target=GPUTarget("cuda", 90, 32))``. That runs in subprocesses without
TRITON_INTERPRET (under the interpreter ``@triton.jit`` gives objects the compiler cannot take), in parallel,
with a fresh TRITON_CACHE_DIR. Run with ``-s`` to see the registers/spills table.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.toolchain import _triton_aot_sm90 as aot

ROOT = Path(__file__).resolve().parents[2]
HELPER = Path(aot.__file__).resolve()
CASES = list(aot.CASES)
NEGATIVE = list(aot.NEGATIVE)

# One xdist worker takes all of them (scripts/test.sh uses --dist loadgroup); with other --dist modes the
# workers share one compilation through a lock file (see the fixture).
pytestmark = pytest.mark.xdist_group("triton_sm90_aot")


def _compile_all(workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    ids = CASES + NEGATIVE
    n = max(1, min(os.cpu_count() or 1, 4, len(ids)))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(workdir / "cache"), TRITON_ALWAYS_COMPILE="1", TRITON_DUMP_PTXAS_LOG="1")
    procs = []
    t0 = time.perf_counter()
    for i in range(n):  # round robin: every process gets a mix of cheap and paged-attention cases
        out = workdir / f"part{i}.json"
        cmd = [sys.executable, str(HELPER), "--out", str(out), *ids[i::n]]
        procs.append((out, subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                            text=True)))
    results, failures = {}, []
    for out, proc in procs:
        try:
            log, _ = proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()
            log, _ = proc.communicate()
            failures.append(f"timed out after 600 s:\n{log[-4000:]}")
            continue
        if proc.returncode != 0 or not out.is_file():
            failures.append(f"rc={proc.returncode}:\n{log[-4000:]}")
            continue
        results.update(json.loads(out.read_text()))
    if failures:
        pytest.fail("AOT compile subprocess failed:\n" + "\n".join(failures))
    results["_meta"] = {"seconds": round(time.perf_counter() - t0, 1), "processes": n}
    return results


def _cuda_present() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="session")
def compiled(tmp_path_factory) -> dict:
    """case id -> list of per-launch results (one per kernel launch of the case), compiled once per session."""
    if _cuda_present():
        # on a GPU machine the CUDA tests compile and run the kernels for real (with that machine's triton)
        pytest.skip("a GPU is present: the kernels are compiled and run by the CUDA tests instead")
    problem = aot.backend_problem()
    if problem:
        pytest.skip(f"cannot build sm_90 cubins here: {problem}")
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return _compile_all(tmp_path_factory.mktemp("triton_sm90"))
    from filelock import FileLock  # a torch dependency

    root = tmp_path_factory.getbasetemp().parent  # shared by the xdist workers of this run
    done = root / "triton_sm90_results.json"
    with FileLock(str(done) + ".lock"):
        if done.is_file():
            return json.loads(done.read_text())
        results = _compile_all(root / "triton_sm90_work")
        done.write_text(json.dumps(results))
        return results


def _launches(compiled):
    return [ln for case, lns in compiled.items() if case in aot.CASES for ln in lns]


@pytest.mark.parametrize("case", CASES)
def test_kernel_compiles_to_sm90_cubin(compiled, case):
    launches = compiled[case]
    assert launches, f"{case}: no kernel launch recorded"
    for ln in launches:
        assert ln.get("error") is None, f"{case}: {ln.get('kernel')} failed to compile for sm_90:\n{ln['error']}"
        assert ln["cubin_bytes"] > 0 and ln["cubin_elf"], f"{case}: {ln['kernel']} produced no ELF cubin"
        assert str(ln.get("ptx_target", "")).startswith("sm_90"), ln.get("ptx_target")


def test_every_launched_kernel_is_covered(compiled):
    """Each @triton.jit function that a kernels/*.py launcher launches (``name[grid](...)``) is compiled by a case."""
    launched = set()
    for path in sorted((ROOT / "kernels").glob("*.py")):
        tree = ast.parse(path.read_text())
        jitted = {f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
                  and any("jit" in ast.unparse(d) for d in f.decorator_list)}
        launched |= {f"{path.stem}.{node.func.value.id}" for node in ast.walk(tree)
                     if isinstance(node, ast.Call) and isinstance(node.func, ast.Subscript)
                     and isinstance(node.func.value, ast.Name) and node.func.value.id in jitted}
    assert len(launched) >= 7, launched  # 5 single kernels + paged attention's _attn_kernel and _reduce_kernel
    # a case of one op may launch kernels of another module (token_stats -> token_stats_split): name them by theirs
    covered = {f"{ln['module']}.{ln['kernel']}" for case, lns in compiled.items() if case in aot.CASES
               for ln in lns if not ln.get("error")}
    assert launched <= covered, f"kernels without an sm_90 compile case: {sorted(launched - covered)}"


def test_paged_attention_variants_covered(compiled):
    """The launcher's heuristics still produce every variant the cases are meant to cover."""
    attn = [ln["constexprs"] for ln in _launches(compiled) if ln["kernel"] == "_attn_kernel"]
    assert {c["HEAD_DIM"] for c in attn} >= {64, 80, 96, 128}
    assert {c["SPLIT"] for c in attn} == {True, False}
    assert {c["CAUSAL"] for c in attn} == {True, False}
    assert {c["IEEE"] for c in attn} == {True, False}  # fp32 must not drop to tf32
    assert not any(c["DOT_F32"] for c in attn)  # upcast is for the interpreter only; GPUs use 16-bit MMA
    assert {c["GROUP"] for c in attn} >= {1, 4, 7, 8}
    assert any(ln["kernel"] == "_reduce_kernel" for ln in _launches(compiled))
    for case, lns in compiled.items():
        for ln in lns:
            if case in aot.CASES and ln["kernel"] == "_attn_kernel":
                assert ln["constexprs"]["SPLIT"] == ("split" in case), f"{case}: SPLIT={ln['constexprs']['SPLIT']}"


def test_paged_attention_does_not_spill(compiled):
    """Decode, verification and prefill (split or not, every dtype) fit in registers on Hopper: no
    local-memory spills (fp32 needs the launcher's smaller key tiles for that)."""
    decode = [ln for case, lns in compiled.items() if case in aot.CASES and "paged_attention" in case for ln in lns]
    assert decode
    if any(ln.get("spill_stores") is None for ln in decode):
        pytest.skip("the ptxas -v log was not captured; no register/spill numbers")
    spilling = [f"{ln['case']} {ln['kernel']}: {ln['n_regs']} regs, {ln['spill_stores']} B spill stores"
                for ln in decode if ln["spill_stores"] or ln["spill_loads"]]
    assert not spilling, "\n".join(spilling)


@pytest.mark.parametrize("case", NEGATIVE)
def test_broken_constexpr_is_rejected(compiled, case):
    """The check has teeth: BLOCK_D = HEAD_DIM = 80 (no next_power_of_2) must fail in the front end."""
    (ln,) = compiled[case]
    assert ln.get("error"), f"{case}: compiled although BLOCK_D is not a power of 2"
    assert "power of 2" in ln["error"], ln["error"]


def test_print_register_report(compiled):
    """Not a check: the per-launch table (registers and spills from ptxas -v, shared memory), shown with -s."""
    meta = compiled.get("_meta", {})
    rows = [(f"sm_90 AOT compile: {len(_launches(compiled))} launches of {len(CASES)} cases in "
             f"{meta.get('seconds', '?')} s ({meta.get('processes', '?')} processes)"),
            f"{'case':58s} {'kernel':20s} {'warps':>5s} {'regs':>4s} {'spill st/ld':>11s} {'smem':>6s} {'s':>5s}"]
    for ln in _launches(compiled):
        spill = "?" if ln.get("spill_stores") is None else f"{ln['spill_stores']}/{ln['spill_loads']}"
        rows.append(f"{ln['case']:58s} {ln.get('kernel')!s:20s} {(ln.get('options') or {}).get('num_warps')!s:>5s} "
                    f"{ln.get('n_regs')!s:>4s} {spill:>11s} {ln.get('shared_bytes')!s:>6s} {ln.get('seconds')!s:>5s}")
    print("\n" + "\n".join(rows))
