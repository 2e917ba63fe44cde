// ops.fuse_logits on CPU: one row per OpenMP iteration, two passes over `large` (the mask needs the
// row max first), the second fused with the arithmetic. Rows are processed in L1-sized chunks
// converted to float, so every inner loop is a plain float loop the compiler vectorises.
// Semantics (zero weights drop their input, NaN ignored by the max): reference/fuse_logits.py.
#include <cmath>

#include "cpu_math.h"
#include "op_args.h"

namespace fsgen {
namespace {

FSGEN_SIMD_CLONES float row_max(const void* row, int dtype, int64_t V, float* buf) {
  float lanes[kLanes];
  for (int j = 0; j < kLanes; ++j) lanes[j] = kNegInf;
  for (int64_t c0 = 0; c0 < V; c0 += kChunk) {
    const int64_t n = std::min(kChunk, V - c0);
    const float* x = chunk_as_float(row, dtype, c0, n, buf);
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
      for (int j = 0; j < kLanes; ++j) lanes[j] = x[i + j] > lanes[j] ? x[i + j] : lanes[j];  // NaN never wins
    for (; i < n; ++i) lanes[0] = x[i] > lanes[0] ? x[i] : lanes[0];
  }
  float m = kNegInf;
  for (int j = 0; j < kLanes; ++j) m = lanes[j] > m ? lanes[j] : m;
  return m;
}

void fuse_logits_cpu(std::uintptr_t large, int64_t large_stride, int large_dtype, std::uintptr_t small,
                     int64_t small_stride, int small_dtype, std::uintptr_t small_ft, int64_t ft_stride, int ft_dtype,
                     int64_t B, int64_t V, double w_l, double w_s, double w_f, double log_alpha, std::uintptr_t out) {
  const char* lb = ptr<const char>(large);
  const char* sb = ptr<const char>(small);
  const char* fb = ptr<const char>(small_ft);
  float* o = ptr<float>(out);  // [B, V] contiguous
  const bool use_mask = !std::isinf(log_alpha) || log_alpha > 0;
  const bool use_l = w_l != 0.0, use_s = w_s != 0.0, use_f = small_ft != 0 && w_f != 0.0;
  const float wl = static_cast<float>(w_l), ws = static_cast<float>(w_s), wf = static_cast<float>(w_f);
  py::gil_scoped_release release;
#pragma omp parallel
  {
    std::vector<float> buf(3 * kChunk);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      const void* lrow = lb + b * large_stride * dtype_size(large_dtype);
      const void* srow = sb + b * small_stride * dtype_size(small_dtype);
      const void* frow = use_f ? fb + b * ft_stride * dtype_size(ft_dtype) : nullptr;
      float* orow = o + b * V;
      // Threshold in double like the reference, then rounded: large < thr in float is the same test.
      const float thr = use_mask ? static_cast<float>(row_max(lrow, large_dtype, V, buf.data()) + log_alpha) : kNegInf;
      for (int64_t c0 = 0; c0 < V; c0 += kChunk) {
        const int64_t n = std::min(kChunk, V - c0);
        const float* l = chunk_as_float(lrow, large_dtype, c0, n, buf.data());
        float* oc = orow + c0;
        for (int64_t i = 0; i < n; ++i) oc[i] = use_l ? wl * l[i] : 0.0f;
        if (use_s) {
          const float* s = chunk_as_float(srow, small_dtype, c0, n, buf.data() + kChunk);
          for (int64_t i = 0; i < n; ++i) oc[i] += ws * s[i];
        }
        if (use_f) {
          const float* f = chunk_as_float(frow, ft_dtype, c0, n, buf.data() + 2 * kChunk);
          for (int64_t i = 0; i < n; ++i) oc[i] += wf * f[i];
        }
        if (use_mask)
          for (int64_t i = 0; i < n; ++i) oc[i] = l[i] < thr ? kNegInf : oc[i];
      }
    }
  }
}

FSGEN_DEF(fuse_logits_cpu, "ops.fuse_logits on CPU (see op_args.h for the arguments)", FSGEN_FUSE_LOGITS_ARGS);

}  // namespace
}  // namespace fsgen
