"""Build script: setuptools drives CMake to build the native extension ``fsgen_engine._C``.

``_C`` does not link libtorch (tensors reach it as pointers, shapes and strides), so this script never
imports torch: what it builds depends on the environment variables below and on ``nvcc`` only, and it
behaves the same with or without pip's build isolation.

Environment:
  FSGEN_BUILD_CUDA=auto|0|1  auto (default): build the CUDA kernels when nvcc is found ($CUDA_HOME/bin, PATH,
                             /usr/local/cuda/bin); 0: CPU kernels only; 1: CUDA required, fail without nvcc.
  FSGEN_CUDA_ARCHS           CMake CUDA architectures, e.g. "90" or "80;90". Default: the compute
                             capabilities of the GPUs that nvidia-smi reports (so a GPU machine builds for
                             itself only, e.g. sm_90 on an H100/H200), else "80;90".
  FSGEN_NATIVE_ARCH=0|1      1: compile the CPU kernels with -march=native (fastest on the build machine,
                             but the binary may not run on an older CPU). Default 0: portable x86-64.
  FSGEN_BUILD_JOBS           parallel compile jobs (default: the number of CPUs).
  FSGEN_SKIP_NATIVE=1        build no extension at all (the package then runs on Triton/reference).

Offline build (no network, e.g. a GPU machine): ``pip install --no-build-isolation --no-deps -e .`` uses
the setuptools, pybind11, cmake and ninja already installed.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
DEFAULT_CUDA_ARCHS = "80;90"
DEFAULT_NVCC = "/usr/local/cuda/bin/nvcc"


def _flag(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = os.environ.get(name, default).strip().lower()
    if value not in allowed:
        raise RuntimeError(f"{name}={value!r} is invalid: use one of {', '.join(allowed)}")
    return value


def _nvcc() -> str | None:
    """$CUDA_HOME/bin/nvcc, else nvcc on PATH, else the toolkit's usual place (/usr/local/cuda/bin/nvcc)."""
    if os.environ.get("CUDA_HOME"):
        path = os.path.join(os.environ["CUDA_HOME"], "bin", "nvcc")
        if os.path.exists(path):
            return path
    found = shutil.which("nvcc")
    if found is None and os.access(DEFAULT_NVCC, os.X_OK):
        found = DEFAULT_NVCC
    return found


def want_cuda() -> bool:
    """Whether to build the CUDA kernels: from FSGEN_BUILD_CUDA and nvcc alone."""
    mode = _flag("FSGEN_BUILD_CUDA", "auto", ("auto", "0", "1"))
    if mode == "0":
        return False
    if _nvcc() is None:
        if mode == "1":
            raise RuntimeError(
                "FSGEN_BUILD_CUDA=1 but nvcc was not found: put nvcc on PATH or set CUDA_HOME, "
                "or use FSGEN_BUILD_CUDA=auto to build the CPU kernels only")
        return False
    return True


def cuda_archs() -> str:
    """FSGEN_CUDA_ARCHS, else the local GPUs' compute capabilities (nvidia-smi), else DEFAULT_CUDA_ARCHS."""
    archs = os.environ.get("FSGEN_CUDA_ARCHS", "").strip()
    if archs:
        return archs
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=30, check=True).stdout
            caps = sorted({line.strip().replace(".", "") for line in out.splitlines() if line.strip()})
            if caps and all(c.isdigit() for c in caps):
                return ";".join(caps)
        except (OSError, subprocess.SubprocessError):
            pass
    return DEFAULT_CUDA_ARCHS


class CMakeExtension(Extension):
    def __init__(self, name: str):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        import pybind11

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_temp = Path(self.build_temp).resolve() / ext.name
        build_temp.mkdir(parents=True, exist_ok=True)
        with_cuda = want_cuda()
        native = _flag("FSGEN_NATIVE_ARCH", "0", ("0", "1")) == "1"
        args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DFSGEN_WITH_CUDA={'ON' if with_cuda else 'OFF'}",
            f"-DFSGEN_NATIVE_ARCH={'ON' if native else 'OFF'}",
        ]
        what = "CPU"
        if with_cuda:
            archs = cuda_archs()
            args += [f"-DCMAKE_CUDA_ARCHITECTURES={archs}", f"-DCMAKE_CUDA_COMPILER={_nvcc()}"]
            what = f"CPU + CUDA (architectures {archs})"
        if shutil.which("ninja"):
            args += ["-G", "Ninja"]
        print(f"fsgen_engine: building _C ({what} kernels, {'-march=native' if native else 'portable'} CPU code)")
        subprocess.check_call(["cmake", str(ROOT), *args], cwd=build_temp)
        jobs = os.environ.get("FSGEN_BUILD_JOBS") or str(os.cpu_count() or 2)
        subprocess.check_call(["cmake", "--build", ".", "--parallel", jobs], cwd=build_temp)


if __name__ == "__main__":  # setuptools runs this file as __main__; tests import it for the functions above
    setup(
        packages=[
            "fsgen_engine",
            *[f"fsgen_engine.{p.name}" for p in sorted((ROOT / "fsgen_engine").iterdir())
              if (p / "__init__.py").exists()],
            "fsgen_engine.kernels",
        ],
        package_dir={"fsgen_engine": "fsgen_engine", "fsgen_engine.kernels": "kernels"},
        ext_modules=[] if os.environ.get("FSGEN_SKIP_NATIVE") == "1" else [CMakeExtension("fsgen_engine._C")],
        cmdclass={"build_ext": CMakeBuild},
        zip_safe=False,
    )
