// ops.verify on CPU: one row per OpenMP iteration; the target distribution at each position is
// the sample filter (sampling_common.h); rejection sampling as in reference/verify.py.
#include <algorithm>

#include "fsgen.h"
#include "op_args.h"
#include "sampling_common.h"

namespace fsgen {
namespace {

void verify_cpu(std::uintptr_t draft, int64_t d_s0, std::uintptr_t logits, int64_t l_s0, int64_t l_s1, int dtype,
                std::uintptr_t q_ptr, int64_t q_s0, int64_t q_s1, int q_dtype, std::uintptr_t num_draft, int64_t B,
                int64_t K, int64_t V, std::uintptr_t temperature, std::uintptr_t top_k, std::uintptr_t top_p,
                std::uintptr_t min_p, std::uintptr_t seed_ptr, std::uintptr_t out_accepted, std::uintptr_t out_next) {
  using namespace sampling;
  const int64_t* dr = ptr<const int64_t>(draft);
  const int64_t* nd = ptr<const int64_t>(num_draft);
  const float* t = ptr<const float>(temperature);
  const int64_t* k = ptr<const int64_t>(top_k);
  const float* tp = ptr<const float>(top_p);
  const float* mp = ptr<const float>(min_p);
  const uint64_t seed = static_cast<uint64_t>(*ptr<const int64_t>(seed_ptr));
  int64_t* acc_out = ptr<int64_t>(out_accepted);
  int64_t* next_out = ptr<int64_t>(out_next);
  const char* lbase = ptr<const char>(logits);
  const char* qbase = ptr<const char>(q_ptr);
  const int64_t esize = dtype_size(dtype), qsize = dtype_size(q_dtype);
  py::gil_scoped_release release;
#pragma omp parallel
  {
    static thread_local RowScratch s;  // kept across calls (see sample.cpp)
    static thread_local std::vector<float> r;
    s.resize(V);
    if (static_cast<int64_t>(r.size()) < V) r.resize(V);
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < B; ++b) {
      const int64_t n = std::min<int64_t>(std::max<int64_t>(nd[b], 0), K);
      int64_t accepted = n, token = 0;
      for (int64_t i = 0; i <= n; ++i) {
        const void* row = lbase + (b * l_s0 + i * l_s1) * esize;
        const RowFilter f = filter_row(row, dtype, V, t[b], k[b], tp[b], mp[b], s);
        const uint64_t ctr = static_cast<uint64_t>(b * (K + 1) + i);
        if (i == n) {  // every draft accepted: bonus token from p_n
          token = f.greedy ? f.argmax : draw(s.w.data(), V, f.total, seed, ctr);
          break;
        }
        const int64_t x = dr[b * d_s0 + i];
        const bool in_range = x >= 0 && x < V;
        const float inv_total = f.greedy ? 0.f : static_cast<float>(1.0 / f.total);
        float px = 0.f, qx = 1.f;
        if (in_range) px = f.greedy ? (x == f.argmax ? 1.f : 0.f) : s.w[x] * inv_total;
        const void* qrow = qbase ? qbase + (b * q_s0 + i * q_s1) * qsize : nullptr;
        if (qrow) qx = in_range ? load_as_float(qrow, q_dtype, x) : 0.f;
        if (uniform01(seed, kStreamAccept, static_cast<uint64_t>(b), static_cast<uint64_t>(i)) * qx < px) continue;
        accepted = i;
        if (f.greedy) {  // max(0, onehot(argmax) - q) is all on the argmax (or all zero -> p)
          token = f.argmax;
        } else {
          double rsum = 0.0;
          for (int64_t j = 0; j < V; ++j) {
            float qj = qrow ? load_as_float(qrow, q_dtype, j) : (j == x ? 1.f : 0.f);
            float rj = s.w[j] * inv_total - qj;
            rj = rj > 0.f ? rj : 0.f;
            r[j] = rj;
            rsum += rj;
          }
          token = rsum > 0.0 ? draw(r.data(), V, rsum, seed, ctr) : draw(s.w.data(), V, f.total, seed, ctr);
        }
        break;
      }
      acc_out[b] = accepted;
      next_out[b] = token;
    }
  }
}

FSGEN_DEF(verify_cpu, "ops.verify on CPU (see op_args.h for the arguments)", FSGEN_VERIFY_ARGS);

}  // namespace
}  // namespace fsgen
