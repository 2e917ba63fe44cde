"""The native extension is part of every build of this project: a failed build is a failure, not a skip.

- On any machine the C++ CPU kernels of ``fsgen_engine._C`` must import (scripts/setup_env.sh fails
  when the build fails, and this test fails when the extension is missing). The package itself still
  works without ``_C`` (tests/test_without_native.py covers that fallback in a fresh interpreter).
- When the build was asked for CUDA (``FSGEN_BUILD_CUDA=1``) the CUDA kernels must be in it.
- setup.py decides from ``FSGEN_BUILD_CUDA`` and ``nvcc`` alone, without torch (under pip's build
  isolation torch is absent, which used to drop the CUDA kernels silently); it picks the local GPUs'
  architectures (nvidia-smi) unless ``FSGEN_CUDA_ARCHS`` says otherwise.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
CPU_FUNCTIONS = ("token_stats_cpu", "fuse_logits_cpu", "sample_cpu", "verify_cpu", "paged_attention_cpu")
CUDA_FUNCTIONS = ("token_stats_cuda", "fuse_logits_cuda", "sample_cuda", "verify_cuda")


def test_cpu_kernels_of_native_extension_are_importable():
    try:
        from fsgen_engine import _C
    except ImportError as e:
        pytest.fail(f"fsgen_engine._C does not import ({e}): the native build failed or was skipped; rebuild with "
                    "`bash scripts/setup_env.sh` (or `pip install --no-build-isolation --no-deps -e .`) and read its log")
    missing = [f for f in CPU_FUNCTIONS if not callable(getattr(_C, f, None))]
    assert not missing, f"fsgen_engine._C lacks the CPU kernels {missing}"
    # and one runs: the C++ token statistics of a row whose answer is known
    from fsgen_engine.ops import token_stats

    x = torch.tensor([[0.0, 3.0, 1.0, 3.0 - 1e-3]])
    st = token_stats(x, backend="cpu")
    assert st.argmax.tolist() == [1]
    torch.testing.assert_close(st.logsumexp, torch.logsumexp(x.double(), -1).float())


@pytest.mark.skipif(os.environ.get("FSGEN_BUILD_CUDA") != "1", reason="only a build asked for CUDA (FSGEN_BUILD_CUDA=1) "
                    "must contain the CUDA kernels")
def test_cuda_build_has_cuda_kernels():
    from fsgen_engine import _C

    assert _C.has_cuda, "FSGEN_BUILD_CUDA=1 but fsgen_engine._C was built without CUDA (rebuild: the build log says why)"
    missing = [f for f in CUDA_FUNCTIONS if not callable(getattr(_C, f, None))]
    assert not missing, f"fsgen_engine._C lacks the CUDA kernels {missing}"


# setup.py's decisions, in a fresh interpreter where importing torch fails (as under build isolation).
_PROBE = r'''
import importlib.abc, importlib.util, json, sys
class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is not importable here")
sys.meta_path.insert(0, _NoTorch())
spec = importlib.util.spec_from_file_location("fsgen_setup", sys.argv[1])
setup = importlib.util.module_from_spec(spec)
spec.loader.exec_module(setup)
setup.DEFAULT_NVCC = "/nonexistent/nvcc"  # only the fake tools on PATH count
try:
    out = {"cuda": setup.want_cuda(), "archs": setup.cuda_archs()}
except RuntimeError as e:
    out = {"error": str(e)}
print(json.dumps(out))
'''


def _fake_tool(folder: Path, name: str, stdout: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / name
    tool.write_text(f"#!/bin/sh\nprintf '{stdout}'\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)


def _probe(tmp_path, *, tools: dict[str, str], **env) -> dict:
    bin_dir = tmp_path / f"bin{len(list(tmp_path.iterdir()))}"  # a fresh folder per probe
    bin_dir.mkdir()
    for name, out in tools.items():
        _fake_tool(bin_dir, name, out)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FSGEN_", "CUDA_HOME"))}
    base["PATH"] = f"{bin_dir}:/usr/bin:/bin"  # no real nvcc / nvidia-smi
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(ROOT / "setup.py")], env={**base, **env},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_setup_builds_cuda_when_nvcc_is_found_without_torch(tmp_path):
    got = _probe(tmp_path, tools={"nvcc": ""})
    assert got == {"cuda": True, "archs": "80;90"}  # no GPU visible: the default architectures


def test_setup_skips_cuda_without_nvcc_unless_required(tmp_path):
    assert _probe(tmp_path, tools={})["cuda"] is False
    assert _probe(tmp_path, tools={"nvcc": ""}, FSGEN_BUILD_CUDA="0")["cuda"] is False
    err = _probe(tmp_path, tools={}, FSGEN_BUILD_CUDA="1")["error"]
    assert "FSGEN_BUILD_CUDA=1" in err and "nvcc" in err
    assert "FSGEN_BUILD_CUDA='yes'" in _probe(tmp_path, tools={}, FSGEN_BUILD_CUDA="yes")["error"]


def test_setup_builds_for_the_local_gpu_only(tmp_path):
    # an H100/H200 machine: nvidia-smi reports compute capability 9.0, so only sm_90 is built
    assert _probe(tmp_path, tools={"nvcc": "", "nvidia-smi": "9.0\\n"})["archs"] == "90"
    assert _probe(tmp_path, tools={"nvcc": "", "nvidia-smi": "9.0\\n8.0\\n"})["archs"] == "80;90"
    # an explicit list wins
    assert _probe(tmp_path, tools={"nvcc": "", "nvidia-smi": "9.0\\n"}, FSGEN_CUDA_ARCHS="90a")["archs"] == "90a"
