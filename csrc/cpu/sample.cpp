// ops.sample on CPU: one row per OpenMP iteration; filters by radix-select thresholds, then an
// inverse-CDF draw with counter-based noise (sampling_common.h). See reference/sample.py.
#include "fsgen.h"
#include "op_args.h"
#include "sampling_common.h"

namespace fsgen {
namespace {

void sample_cpu(std::uintptr_t logits, int64_t B, int64_t V, int64_t row_stride, int dtype, std::uintptr_t temperature,
                std::uintptr_t top_k, std::uintptr_t top_p, std::uintptr_t min_p, std::uintptr_t seed_ptr,
                std::uintptr_t out) {
  const float* t = ptr<const float>(temperature);
  const int64_t* k = ptr<const int64_t>(top_k);
  const float* tp = ptr<const float>(top_p);
  const float* mp = ptr<const float>(min_p);
  const uint64_t seed = static_cast<uint64_t>(*ptr<const int64_t>(seed_ptr));
  int64_t* o = ptr<int64_t>(out);
  const char* base = ptr<const char>(logits);
  const int64_t esize = dtype_size(dtype);
  py::gil_scoped_release release;
#pragma omp parallel
  {
    // thread_local: OpenMP threads persist, so the scratch (MBs at V=150k) is not re-allocated and
    // re-faulted on every call
    static thread_local sampling::RowScratch s;
    s.resize(V);
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < B; ++b) {
      const void* row = base + b * row_stride * esize;
      const sampling::RowFilter f = sampling::filter_row(row, dtype, V, t[b], k[b], tp[b], mp[b], s);
      if (f.greedy) {
        o[b] = f.argmax;
      } else if (s.sparse) {  // top-k: draw among the survivors (same token as over the dense weights)
        const int64_t m = static_cast<int64_t>(s.surv.size());
        o[b] = s.surv[sampling::draw(s.surv_w.data(), m, f.total, seed, static_cast<uint64_t>(b))];
      } else {
        o[b] = sampling::draw(s.w.data(), V, f.total, seed, static_cast<uint64_t>(b));
      }
    }
  }
}

FSGEN_DEF(sample_cpu, "ops.sample on CPU (see op_args.h for the arguments)", FSGEN_SAMPLE_ARGS);

}  // namespace
}  // namespace fsgen
