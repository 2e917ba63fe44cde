"""Build and load ``_C_simt``: the CUDA kernels of csrc/cuda compiled as host C++ and run by the SIMT
emulator (csrc/simt/simt.h), so tests run the CUDA kernels' logic on CPU tensors without a GPU.

    from tests._simt import cuda_emulator, emulated   # pytest fixtures
    def test_x(emulated):                             # emulated: the module, with use_cuda_emulator active
        token_stats(cpu_logits, backend="cuda")       # runs csrc/cuda/token_stats.cu under the emulator

``build_cuda_emulator()`` builds once per hash of the native sources into ``<repo>/build/simt-<hash>/``
(git-ignored; cmake + ninja as setup.py does; a file lock serialises pytest-xdist workers) and imports
it. A failed build raises: gcc and cmake exist wherever the tests run, so it is a failure, not a skip.
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_SOURCES = ("CMakeLists.txt", "csrc")


def source_hash() -> str:
    """Hash of everything the build reads (CMakeLists.txt and csrc/**) plus the Python version."""
    h = hashlib.sha256(f"{sys.version_info[:2]}".encode())
    files = [ROOT / "CMakeLists.txt"] + sorted(p for p in (ROOT / "csrc").rglob("*") if p.is_file())
    for p in files:
        h.update(str(p.relative_to(ROOT)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _build(build_dir: Path) -> Path:
    import pybind11

    args = ["cmake", str(ROOT), "-DFSGEN_SIMT=ON", "-DFSGEN_WITH_CUDA=OFF", "-DCMAKE_BUILD_TYPE=Release",
            f"-DPython_EXECUTABLE={sys.executable}", f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={build_dir}"]
    if shutil.which("ninja"):
        args += ["-G", "Ninja"]
    jobs = os.environ.get("FSGEN_BUILD_JOBS") or str(os.cpu_count() or 2)
    log = build_dir / "build.log"
    with open(log, "w") as f:
        for cmd in (args, ["cmake", "--build", ".", "--target", "_C_simt", "--parallel", jobs]):
            if subprocess.run(cmd, cwd=build_dir, stdout=f, stderr=subprocess.STDOUT).returncode != 0:
                tail = log.read_text()[-6000:]
                raise RuntimeError(f"building the SIMT emulator module _C_simt failed ({' '.join(cmd[:3])} ...); "
                                   f"log {log}:\n{tail}")
    found = sorted(build_dir.glob("_C_simt*.so"))
    if not found:
        raise RuntimeError(f"the build of _C_simt in {build_dir} produced no _C_simt*.so")
    return found[0]


@functools.lru_cache(maxsize=None)
def build_cuda_emulator():
    """The ``_C_simt`` module for the current sources (built on first use; cached per process)."""
    build_dir = ROOT / "build" / f"simt-{source_hash()}"
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another xdist worker may be building the same sources
        done = build_dir / ".built"
        so = Path(done.read_text()) if done.exists() else None
        if so is None or not so.exists():
            so = _build(build_dir)
            done.write_text(str(so))
    spec = importlib.util.spec_from_file_location("_C_simt", so)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def cuda_emulator():
    """The ``_C_simt`` module (session scope); a build failure fails the tests that use it."""
    return build_cuda_emulator()


@pytest.fixture
def emulated(cuda_emulator):
    """``cuda_emulator`` with ``fsgen_engine.ops._native.use_cuda_emulator`` active for one test:
    ``backend="cuda"`` on cpu tensors runs the emulated CUDA kernels."""
    from fsgen_engine.ops._native import use_cuda_emulator

    with use_cuda_emulator(cuda_emulator):
        yield cuda_emulator
