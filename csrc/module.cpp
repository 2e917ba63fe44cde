// pybind11 module fsgen_engine._C: collects the functions every source file registered.
#include "fsgen.h"

namespace fsgen {
std::vector<RegisterFn>& registry() {
  static std::vector<RegisterFn> fns;
  return fns;
}
}  // namespace fsgen

PYBIND11_MODULE(_C, m) {
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
