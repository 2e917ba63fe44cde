"""The CUDA kernels cannot run without a GPU, but they must compile: nvcc checks every csrc/cuda/*.cu
for Hopper (sm_90) here, so a CPU-only CI still catches type and syntax errors in them."""
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CUDA_SOURCES = sorted((ROOT / "csrc" / "cuda").glob("*.cu"))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not found: CUDA sources cannot be compile-checked here")
@pytest.mark.skipif(not CUDA_SOURCES, reason="no CUDA sources")
def test_every_cuda_source_compiles_for_sm90(tmp_path):
    import pybind11

    includes = [ROOT / "csrc" / "include", pybind11.get_include(), sysconfig.get_paths()["include"]]
    procs = []
    for src in CUDA_SOURCES:
        cmd = ["nvcc", "-std=c++17", "-O1", "-arch=sm_90", "-Xcompiler", "-fPIC", "-DFSGEN_WITH_CUDA=1", "-c", str(src),
               "-o", str(tmp_path / (src.stem + ".o"))]
        cmd += [f"-I{inc}" for inc in includes]
        procs.append((src.name, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    failures = []
    for name, proc in procs:
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            failures.append(f"--- {name} ---\n{out[-4000:]}")
    assert not failures, "CUDA sources failed to compile:\n" + "\n".join(failures)
