"""Ahead-of-time compilation of every Triton kernel of ``fsgen_engine.kernels`` for Hopper (sm_90), no GPU needed.

Used by ``tests/toolchain/test_triton_compiles_sm90.py``, which runs this file as a script in subprocesses
without ``TRITON_INTERPRET`` (under the interpreter ``@triton.jit`` makes ``InterpretedFunction``s, which the
compiler cannot take):

    python tests/toolchain/_triton_aot_sm90.py --out results.json [CASE ...]   # all cases when none is given
    python tests/toolchain/_triton_aot_sm90.py --list

Each case calls a real ``*_triton`` launch function with fake CUDA tensors (``FakeTensorMode``: shapes, dtypes
and strides, no memory, no device), so its GPU branches (``q.is_cuda``) pick block sizes, flags and
``num_warps``; the ``kernel[grid](...)`` calls are recorded instead of run. Each recorded launch is turned
into the signature a real launch specializes to (pointer dtypes, i32/i64 scalars, ``tt.divisibility=16`` on
aligned pointers and on ints that are multiples of 16, ints equal to 1 as constexprs) and compiled by
``triton.compile(ASTSource(...), target=GPUTarget("cuda", 90, 32))`` through TTIR, TTGIR, LLVM IR and PTX to a
cubin (Triton's bundled ptxas). Registers and spills are read from the ptxas ``-v`` log.

Importing this module needs torch only; triton and the kernels are imported when a case is compiled.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass

import torch

TARGET = ("cuda", 90, 32)  # GPUTarget(backend, arch, warp_size): Hopper
H100_SMS = 132  # SMs of an H100 SXM; only sizes the flash-decoding split count (kernels/paged_attention.py)

f32, f16, bf16, i32, i64 = torch.float32, torch.float16, torch.bfloat16, torch.int32, torch.int64
_TL_DTYPE = {f32: "fp32", f16: "fp16", bf16: "bf16", i32: "i32", i64: "i64", torch.bool: "i1", torch.uint8: "u8",
             torch.int8: "i8"}
_DT = {f32: "fp32", f16: "fp16", bf16: "bf16"}


# ----------------------------------------------------------------------------------------------------------------
# Cases: realistic inputs of each op on a GPU (model shapes in the ids), run through the real launchers.
# A builder gets ``T(shape, dtype)`` (a fake CUDA tensor) and calls one ``*_triton`` function.
# ----------------------------------------------------------------------------------------------------------------


def _token_stats(dtype, B, V):
    def run(T):
        from fsgen_engine.kernels.token_stats import token_stats_triton
        token_stats_triton(T((B, V), dtype), T((4, B), f32), T((B,), i64))
    return run


def _fuse_logits(dl, ds, df, V, *, mask, B=4):
    def run(T):
        from fsgen_engine.kernels.fuse_logits import fuse_logits_triton
        ft = T((B, V), df) if df is not None else None
        fuse_logits_triton(T((B, V), dl), T((B, V), ds), ft, 0.5, -0.5, 1.0 if ft is not None else 0.0,
                           math.log(0.1) if mask else float("-inf"), T((B, V), f32))
    return run


def _sampling_params(T, B):
    return T((B,), f32), T((B,), i64), T((B,), f32), T((B,), f32), T((1,), i64)  # t, top_k, top_p, min_p, seed


def _sample(dtype, B, V):
    def run(T):
        from fsgen_engine.kernels.sample import sample_triton
        sample_triton(T((B, V), dtype), *_sampling_params(T, B), T((B,), i64))
    return run


def _sample_split(dtype, B, V):
    def run(T):
        from fsgen_engine.kernels.sample_split import sample_any_triton
        sample_any_triton(T((B, V), dtype), *_sampling_params(T, B), T((B,), i64))
    return run


def _verify_split(dtype, B, K, V, q_dtype):
    def run(T):
        from fsgen_engine.kernels.sample_split import verify_any_triton
        t, k, p, mp, seed = _sampling_params(T, B)
        q = T((B, K, V), q_dtype) if q_dtype is not None else None
        verify_any_triton(T((B, K), i64), T((B, K + 1, V), dtype), q, T((B,), i64), t, k, p, mp, seed,
                          T((B,), i64), T((B,), i64))
    return run


def _verify(dtype, B, K, V, q_dtype):
    def run(T):
        from fsgen_engine.kernels.verify import verify_triton
        t, k, p, mp, seed = _sampling_params(T, B)
        q = T((B, K, V), q_dtype) if q_dtype is not None else None
        verify_triton(T((B, K), i64), T((B, K + 1, V), dtype), q, T((B,), i64), t, k, p, mp, seed, T((B,), i64),
                      T((B,), i64))
    return run


def _store_kv(dtype, cache_dtype, Hkv, D, slot_dtype, N=8, page=16, pages=64):
    def run(T):
        from fsgen_engine.kernels.store_kv import store_kv_triton
        store_kv_triton(T((N, Hkv, D), dtype), T((N, Hkv, D), dtype), T((pages, page, Hkv, D), cache_dtype),
                        T((pages, page, Hkv, D), cache_dtype), T((N,), slot_dtype))
    return run


def _paged_attention(dtype, D, H, Hkv, B, q_len, ctx, *, page=16, causal=True, window=0):
    def run(T):
        from fsgen_engine.kernels.paged_attention import paged_attention_triton
        pages_per_seq = -(-ctx // page)
        kv = (B * pages_per_seq, page, Hkv, D)
        paged_attention_triton(T((B * q_len, H, D), dtype), T(kv, dtype), T(kv, dtype), T((B, pages_per_seq), i32),
                               T((B,), i32), T((B + 1,), i32), scale=D ** -0.5, causal=causal, max_q_len=q_len,
                               max_seq_len=ctx, window=window)
    return run


CASES = {
    "token_stats-fp32-V32000": _token_stats(f32, 8, 32000),
    "token_stats-bf16-V128256": _token_stats(bf16, 8, 128256),
    "token_stats-fp16-V1000": _token_stats(f16, 8, 1000),
    "token_stats-bf16-B1-V151936-split": _token_stats(bf16, 1, 151936),
    "token_stats-fp32-B1024-V32000-rowwise": _token_stats(f32, 1024, 32000),
    "token_stats-fp32-B16-V151936-split": _token_stats(f32, 16, 151936),
    "fuse_logits-fp16-contrastive-V32000": _fuse_logits(f16, f16, None, 32000, mask=True),
    "fuse_logits-bf16-contrastive-B1-V151936-split": _fuse_logits(bf16, bf16, None, 151936, mask=True, B=1),
    "fuse_logits-fp32-weighted-B1024-V32000-rowwise": _fuse_logits(f32, f32, None, 32000, mask=False, B=1024),
    "fuse_logits-bf16-proxy-V152064": _fuse_logits(bf16, bf16, bf16, 152064, mask=False),
    "fuse_logits-mixed-weighted-V1000": _fuse_logits(f32, f16, bf16, 1000, mask=True),
    "sample-fp32-B1-V32000": _sample(f32, 1, 32000),
    "sample-bf16-B64-V152064": _sample(bf16, 64, 152064),
    "sample-fp16-B8-V256-rows4": _sample(f16, 8, 256),
    # the GPU path of ops.sample / ops.verify: split rows (kernels/sample_split.py) + full-row fallback
    "sample_split-bf16-B1-V151936": _sample_split(bf16, 1, 151936),
    "sample_split-fp32-B64-V32000": _sample_split(f32, 64, 32000),
    "verify_split-bf16-q_fp32-K4-V151936": _verify_split(bf16, 4, 4, 151936, f32),
    "verify_split-fp16-greedy-K5-V32000": _verify_split(f16, 8, 5, 32000, None),
    "verify-bf16-q_fp32-K4-V128256": _verify(bf16, 8, 4, 128256, f32),
    "verify-fp16-greedy-K4-V32000": _verify(f16, 8, 4, 32000, None),
    "verify-fp32-q_fp16-K3-V512-rows2": _verify(f32, 2, 3, 512, f16),
    # tiny vocabularies: Triton 3.6 failed to compile these with blocks under 256 columns
    "verify-fp32-q_fp32-K2-V8-B4096": _verify(f32, 4096, 2, 8, f32),
    "verify-fp32-q_fp32-K0-V11-B2": _verify(f32, 2, 0, 11, f32),
    "store_kv-fp16-Hkv8-D128-slots_i64": _store_kv(f16, f16, 8, 128, i64),
    "store_kv-bf16-Hkv2-D64-slots_i32": _store_kv(bf16, bf16, 2, 64, i32),
    "store_kv-fp32_to_bf16-Hkv32-D80-slots_i64": _store_kv(f32, bf16, 32, 80, i64),
    # paged attention: decode (q_len 1), verification (K+1), prefill; head dims 64/80/96/128, GQA groups 1-8;
    # SPLIT (flash-decoding + _reduce_kernel) wherever the launcher's heuristic picks it for an H100
    "paged_attention-decode-fp16-D128-g4-B4-split": _paged_attention(f16, 128, 32, 8, 4, 1, 4096),  # Llama-3-8B
    "paged_attention-decode-bf16-D128-g4-B64": _paged_attention(bf16, 128, 32, 8, 64, 1, 2048),
    "paged_attention-decode-fp16-D128-g4-B1-ctx32k-split32": _paged_attention(f16, 128, 32, 8, 1, 1, 32768),
    "paged_attention-decode-bf16-D64-g8-B1-split": _paged_attention(bf16, 64, 32, 4, 1, 1, 2048),  # TinyLlama
    "paged_attention-decode-bf16-D64-g7-B128": _paged_attention(bf16, 64, 14, 2, 128, 1, 1024),  # Qwen2.5-0.5B
    "paged_attention-decode-fp16-D80-g1-B2-split": _paged_attention(f16, 80, 32, 32, 2, 1, 2048),  # Phi-2
    "paged_attention-decode-fp16-D80-g1-B32": _paged_attention(f16, 80, 32, 32, 32, 1, 2048),
    "paged_attention-decode-bf16-D96-g1-B1-split": _paged_attention(bf16, 96, 32, 32, 1, 1, 4096),  # Phi-3-mini
    "paged_attention-decode-bf16-D96-g1-B8-window2047": _paged_attention(bf16, 96, 32, 32, 8, 1, 4096,
                                                                         window=2047),  # Phi-3-mini
    "paged_attention-decode-bf16-D128-g7-B2-split": _paged_attention(bf16, 128, 28, 4, 2, 1, 4096),  # Qwen2-7B
    "paged_attention-decode-fp16-D128-g4-window4096-split": _paged_attention(f16, 128, 32, 8, 2, 1, 8192,
                                                                             window=4096),  # Mistral-7B
    "paged_attention-decode-bf16-D128-g8-page1-split": _paged_attention(bf16, 128, 64, 8, 2, 1, 2048, page=1),
    "paged_attention-verify-bf16-D128-g4-K4-split": _paged_attention(bf16, 128, 32, 8, 8, 5, 2048),
    "paged_attention-verify-fp16-D64-g8-K4": _paged_attention(f16, 64, 32, 4, 64, 5, 2048),
    "paged_attention-verify-bf16-D80-g1-K7-split": _paged_attention(bf16, 80, 32, 32, 2, 8, 2048),
    "paged_attention-verify-fp16-D96-g1-K4": _paged_attention(f16, 96, 32, 32, 8, 5, 2048),
    "paged_attention-prefill-fp16-D128-g4": _paged_attention(f16, 128, 32, 8, 1, 512, 512),
    "paged_attention-prefill-bf16-D64-g8": _paged_attention(bf16, 64, 32, 4, 2, 512, 512),
    "paged_attention-prefill-bf16-D80-g1-noncausal-page256": _paged_attention(bf16, 80, 32, 32, 1, 256, 256,
                                                                              causal=False, page=256),
    "paged_attention-prefill-fp16-D96-g1-window2047": _paged_attention(f16, 96, 32, 32, 1, 1024, 4096,
                                                                       window=2047),
    "paged_attention-decode-fp32-D128-g4-ieee-split": _paged_attention(f32, 128, 32, 8, 2, 1, 2048),
    "paged_attention-decode-fp32-D80-g1-ieee": _paged_attention(f32, 80, 32, 32, 16, 1, 1024),
    "paged_attention-prefill-fp32-D64-g8-ieee": _paged_attention(f32, 64, 32, 4, 2, 128, 128),
    "paged_attention-prefill-fp32-D128-g4-ieee": _paged_attention(f32, 128, 32, 8, 2, 256, 256),
    "paged_attention-prefill-fp32-D80-g1-ieee": _paged_attention(f32, 80, 32, 32, 1, 128, 128),
    "paged_attention-verify-fp32-D128-g4-K4-ieee": _paged_attention(f32, 128, 32, 8, 32, 5, 2048),
    "paged_attention-verify-fp32-D96-g1-K4-ieee-split": _paged_attention(f32, 96, 32, 32, 2, 5, 1024),
}

# A broken launch the compiler must reject: BLOCK_D = HEAD_DIM = 80 (a launcher that forgot
# ``triton.next_power_of_2``); ``tl.arange`` only takes power-of-2 ranges.
NEGATIVE = {
    "paged_attention-BLOCK_D80-not-pow2": ("paged_attention-decode-fp16-D80-g1-B2-split", "_attn_kernel",
                                           {"BLOCK_D": 80}),
}


# ----------------------------------------------------------------------------------------------------------------
# Capture
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Launch:
    kernel: object  # JITFunction
    grid: tuple
    args: tuple
    kwargs: dict


class _Recorder:
    def __init__(self, kernel, sink):
        self.kernel, self.sink = kernel, sink

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.sink.append(Launch(self.kernel, tuple(grid), args, kwargs))
        return launch


def _kernel_modules():
    import importlib
    names = ("token_stats", "token_stats_split", "fuse_logits", "sample", "sample_split", "verify", "store_kv",
             "paged_attention")
    return [importlib.import_module(f"fsgen_engine.kernels.{n}") for n in names]


def capture(case_id: str) -> list[Launch]:
    """Run case ``case_id``'s launcher on fake CUDA tensors; return the kernel launches it makes."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from triton.runtime.jit import JITFunction

    launches: list[Launch] = []
    patched = []
    try:
        for mod in _kernel_modules():
            for name, val in list(vars(mod).items()):
                if isinstance(val, JITFunction):
                    patched.append((mod, name, val))
                    setattr(mod, name, _Recorder(val, launches))
            if hasattr(mod, "_num_sms"):  # torch.cuda.get_device_properties needs a GPU
                patched.append((mod, "_num_sms", mod._num_sms))
                mod._num_sms = lambda index: H100_SMS
        with FakeTensorMode():
            def T(shape, dtype):
                return torch.empty(shape, dtype=dtype, device="cuda")
            CASES[case_id](T)
    finally:
        for mod, name, val in reversed(patched):
            setattr(mod, name, val)
    if not launches:
        raise RuntimeError(f"{case_id}: the launcher made no kernel launch")
    return launches


# ----------------------------------------------------------------------------------------------------------------
# Specialization (what JITFunction.run does for a real launch) and compilation
# ----------------------------------------------------------------------------------------------------------------


def specialize(launch: Launch):
    """(signature, constexprs, attrs, options) of ``launch``, as a real launch would specialize it."""
    kernel = launch.kernel
    names = list(kernel.arg_names)
    kw_args = {k: v for k, v in launch.kwargs.items() if k in names}
    options = {k: v for k, v in launch.kwargs.items() if k not in names}
    bound = inspect.signature(kernel.fn).bind(*launch.args, **kw_args)
    bound.apply_defaults()
    signature, constexprs, attrs = {}, {}, {}
    for i, (name, param) in enumerate(zip(names, kernel.params)):
        v = bound.arguments[name]
        if param.is_constexpr:
            signature[name], constexprs[name] = "constexpr", v
        elif isinstance(v, torch.Tensor):
            signature[name] = "*" + _TL_DTYPE[v.dtype]
            attrs[(i,)] = [["tt.divisibility", 16]]  # torch allocations are 256-byte aligned
        elif isinstance(v, bool):
            signature[name] = "u1"
        elif isinstance(v, int):
            if v == 1:  # Triton specializes ints equal to 1 into constexprs
                signature[name], constexprs[name] = "constexpr", 1
                continue
            signature[name] = "i32" if -2**31 <= v < 2**31 else "i64" if -2**63 <= v < 2**63 else "u64"
            if v % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(v, float):
            signature[name] = "fp32"
        elif v is None:
            signature[name], constexprs[name] = "constexpr", None
        else:
            raise TypeError(f"{kernel.__name__}: argument {name} has unsupported type {type(v).__name__}")
    return signature, constexprs, attrs, options


_PTXAS_REGS = re.compile(r"Used (\d+) registers")
_PTXAS_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def compile_launch(kernel, signature, constexprs, attrs, options) -> dict:
    """Compile one specialization to a cubin for sm_90; a JSON-able result (``error`` set on failure)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    div = {kernel.arg_names[i] for (i,), a in attrs.items() if ["tt.divisibility", 16] in a}
    res = {"kernel": kernel.__name__,  # "name:type", "/16" when tt.divisibility=16
           "signature": " ".join(f"{k}:{v}{'/16' if k in div else ''}" for k, v in signature.items()
                                 if v != "constexpr"),
           "constexprs": dict(constexprs), "options": dict(options), "error": None,
           "cubin_bytes": 0, "cubin_elf": False, "n_regs": None, "spill_stores": None, "spill_loads": None,
           "stack_bytes": None, "shared_bytes": None, "seconds": None}
    t0 = time.perf_counter()
    log = io.StringIO()
    try:
        src = ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs)
        with contextlib.redirect_stdout(log):  # TRITON_DUMP_PTXAS_LOG=1 prints the ptxas -v log
            compiled = triton.compile(src, target=GPUTarget(*TARGET), options=options)
        cubin = compiled.asm.get("cubin") or b""
        res["cubin_bytes"] = len(cubin)
        res["cubin_elf"] = cubin[:4] == b"\x7fELF"
        res["shared_bytes"] = getattr(compiled.metadata, "shared", None)
        target = re.search(r"^\.target\s+(\S+)", compiled.asm.get("ptx", ""), re.MULTILINE)
        res["ptx_target"] = target.group(1) if target else None
    except Exception as e:  # noqa: BLE001 -- reported to the test, which fails with the message
        msg = f"{type(e).__name__}: {e}"
        res["error"] = msg[-6000:]
    res["seconds"] = round(time.perf_counter() - t0, 2)
    text = log.getvalue()
    if m := _PTXAS_REGS.search(text):
        res["n_regs"] = int(m.group(1))
    if m := _PTXAS_STACK.search(text):
        res["stack_bytes"], res["spill_stores"], res["spill_loads"] = map(int, m.groups())
    return res


def run_case(case_id: str, seen: dict) -> list[dict]:
    """Compile every launch of a case (``seen`` dedupes identical specializations within one process)."""
    if case_id in NEGATIVE:
        base, kname, override = NEGATIVE[case_id]
        launches = [ln for ln in capture(base) if ln.kernel.__name__ == kname][:1]
    else:
        launches, override = capture(case_id), {}
    out = []
    for ln in launches:
        sig, cx, attrs, opts = specialize(ln)
        cx.update({k: v for k, v in override.items()})
        key = json.dumps([ln.kernel.__name__, sig, {k: repr(v) for k, v in cx.items()}, sorted(map(str, attrs)),
                          opts], sort_keys=True)
        if key not in seen:
            seen[key] = compile_launch(ln.kernel, sig, cx, attrs, opts)
        module = getattr(ln.kernel, "fn", ln.kernel).__module__.rsplit(".", 1)[-1]  # kernels/<module>.py
        out.append(dict(seen[key], case=case_id, module=module, grid=list(ln.grid)))
    return out


def backend_problem() -> str | None:
    """Why sm_90 cubins cannot be built here (None when they can)."""
    try:
        import triton  # noqa: F401
        from triton.backends import backends
        from triton.backends.compiler import GPUTarget
    except Exception as e:  # noqa: BLE001
        return f"triton is not importable: {e}"
    nv = backends.get("nvidia")
    if nv is None:
        return "triton has no NVIDIA backend"
    try:
        from triton.backends.nvidia.compiler import get_ptxas
        path = get_ptxas(GPUTarget(*TARGET).arch).path
    except Exception as e:  # noqa: BLE001
        return f"no ptxas for sm_90 (triton.backends.nvidia.compiler.get_ptxas failed: {e})"
    if not path or not os.access(path, os.X_OK):
        return f"ptxas for sm_90 not found or not executable: {path!r}"
    return None


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*", help="case ids (default: all cases and negative cases)")
    ap.add_argument("--out", help="write the JSON results here (default: stdout)")
    ap.add_argument("--list", action="store_true", help="list case ids and exit")
    a = ap.parse_args(argv)
    if a.list:
        print("\n".join([*CASES, *NEGATIVE]))
        return 0
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("run without TRITON_INTERPRET: the interpreter's @triton.jit objects cannot be compiled", file=sys.stderr)
        return 2
    os.environ.setdefault("TRITON_DUMP_PTXAS_LOG", "1")  # registers and spills
    os.environ.setdefault("TRITON_ALWAYS_COMPILE", "1")  # a cache hit would skip ptxas and its log
    results, seen = {}, {}
    for case in a.cases or [*CASES, *NEGATIVE]:
        try:
            results[case] = run_case(case, seen)
        except Exception as e:  # noqa: BLE001 -- capture failed (launcher error)
            results[case] = [{"case": case, "kernel": None, "error": f"capture failed: {type(e).__name__}: {e}"}]
    text = json.dumps(results, indent=1, default=repr)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
