"""Build script: setuptools drives CMake to build the native extension ``fsgen_engine._C``.

Environment:
  FSGEN_BUILD_CUDA=auto|0|1  auto (default) builds the CUDA kernels when torch was built with CUDA
                             and nvcc is found; 0 skips them; 1 requires them and fails loudly.
  FSGEN_CUDA_ARCHS           CMake CUDA architectures (default "80;90").
  FSGEN_SKIP_NATIVE=1        build no extension at all (the package then runs on Triton/reference).
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def _want_cuda() -> bool:
    mode = os.environ.get("FSGEN_BUILD_CUDA", "auto").strip().lower()
    if mode not in ("auto", "0", "1"):
        raise RuntimeError(f"FSGEN_BUILD_CUDA={mode!r} is invalid: use auto, 0 or 1")
    if mode == "0":
        return False
    nvcc = shutil.which("nvcc") or (
        os.path.join(os.environ["CUDA_HOME"], "bin", "nvcc") if os.environ.get("CUDA_HOME") else None
    )
    have_nvcc = bool(nvcc) and os.path.exists(nvcc)
    if mode == "1":
        if not have_nvcc:
            raise RuntimeError(
                "FSGEN_BUILD_CUDA=1 but nvcc was not found: put nvcc on PATH or set CUDA_HOME, "
                "or use FSGEN_BUILD_CUDA=auto to build the CPU kernels only"
            )
        return True
    try:
        import torch

        torch_has_cuda = torch.version.cuda is not None
    except ImportError:
        torch_has_cuda = False
    return have_nvcc and torch_has_cuda


class CMakeExtension(Extension):
    def __init__(self, name: str):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        import pybind11

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_temp = Path(self.build_temp).resolve() / ext.name
        build_temp.mkdir(parents=True, exist_ok=True)
        with_cuda = _want_cuda()
        args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DFSGEN_WITH_CUDA={'ON' if with_cuda else 'OFF'}",
        ]
        if with_cuda:
            args.append(f"-DCMAKE_CUDA_ARCHITECTURES={os.environ.get('FSGEN_CUDA_ARCHS', '80;90')}")
        if shutil.which("ninja"):
            args += ["-G", "Ninja"]
        print(f"fsgen_engine: building _C ({'CPU + CUDA' if with_cuda else 'CPU'} kernels)")
        subprocess.check_call(["cmake", str(ROOT), *args], cwd=build_temp)
        jobs = str(os.cpu_count() or 2)
        subprocess.check_call(["cmake", "--build", ".", "--parallel", jobs], cwd=build_temp)


ext_modules = [] if os.environ.get("FSGEN_SKIP_NATIVE") == "1" else [CMakeExtension("fsgen_engine._C")]

setup(
    packages=[
        "fsgen_engine",
        *[f"fsgen_engine.{p.name}" for p in sorted((ROOT / "fsgen_engine").iterdir()) if (p / "__init__.py").exists()],
        "fsgen_engine.kernels",
    ],
    package_dir={"fsgen_engine": "fsgen_engine", "fsgen_engine.kernels": "kernels"},
    ext_modules=ext_modules,
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
