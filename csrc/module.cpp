// pybind11 module fsgen_engine._C: collects the functions every source file registered.
#include "fsgen.h"

namespace fsgen {
std::vector<RegisterFn>& registry() {
  static std::vector<RegisterFn> fns;
  return fns;
}
}  // namespace fsgen

// The SIMT emulator build (CMake FSGEN_SIMT) names the module _C_simt (tests only, csrc/simt/simt.h).
#ifndef FSGEN_MODULE_NAME
#define FSGEN_MODULE_NAME _C
#endif

PYBIND11_MODULE(FSGEN_MODULE_NAME, m) {
  m.doc() = "fsgen_engine native kernels (C++ CPU and, when built, CUDA)";
#ifdef FSGEN_WITH_CUDA
  m.attr("has_cuda") = true;
#else
  m.attr("has_cuda") = false;
#endif
#ifdef _OPENMP
  m.attr("has_openmp") = true;
#else
  m.attr("has_openmp") = false;
#endif
  for (auto& fn : fsgen::registry()) fn(m);
}
