// ops.token_stats on CPU: one row per OpenMP iteration, one pass over memory.
//
// The row is walked in L1-sized chunks. For each chunk: convert to float (fp16/bf16), take the
// chunk top-2 in LANES independent lanes (the compiler turns the fixed-width inner loops into SIMD),
// rescale the running sums to the new max (online softmax at chunk granularity), then accumulate
// sum(exp(x-m)) and sum(exp(x-m)*(x-m)) with a select-free polynomial exp that vectorises without
// -ffast-math. The chunk is re-read from L1, never from memory. Special rows (NaN, +inf, all -inf)
// follow fsgen_engine/reference/token_stats.py.
#include <cmath>

#include "cpu_math.h"
#include "op_args.h"

namespace fsgen {
namespace {

struct RowStats {
  float entropy, max_prob, margin, lse;
  int64_t argmax;
};

FSGEN_SIMD_CLONES RowStats row_stats(const void* row, int dtype, int64_t V, float* buf) {
  float m = kNegInf, second = kNegInf;  // running top-1 / top-2 (with multiplicity) of non-NaN values
  int64_t best = 0, first_nan = -1;
  double s0 = 0.0, s1 = 0.0;  // sum e, sum e*(x-m) relative to m; double keeps 150k-term sums exact enough
  for (int64_t c0 = 0; c0 < V; c0 += kChunk) {
    const int64_t n = std::min(kChunk, V - c0);
    const float* x;
    if (dtype == kFloat32) {
      x = static_cast<const float*>(row) + c0;
    } else {
      to_float(static_cast<const uint16_t*>(row) + c0, dtype, n, buf);
      x = buf;
    }
    // Chunk top-2 per lane; NaN counts as -inf here and is flagged separately.
    float t1[kLanes], t2[kLanes];
    int nan_seen[kLanes];
    for (int j = 0; j < kLanes; ++j) t1[j] = t2[j] = kNegInf, nan_seen[j] = 0;
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
      for (int j = 0; j < kLanes; ++j) {
        const float v = x[i + j];
        const bool isnan = v != v;
        nan_seen[j] |= isnan;
        const float xs = isnan ? kNegInf : v;
        const float lo = xs < t1[j] ? xs : t1[j];
        t2[j] = lo > t2[j] ? lo : t2[j];
        t1[j] = xs > t1[j] ? xs : t1[j];
      }
    }
    for (; i < n; ++i) {
      const float v = x[i];
      const bool isnan = v != v;
      nan_seen[0] |= isnan;
      const float xs = isnan ? kNegInf : v;
      const float lo = xs < t1[0] ? xs : t1[0];
      t2[0] = lo > t2[0] ? lo : t2[0];
      t1[0] = xs > t1[0] ? xs : t1[0];
    }
    float c1 = kNegInf, c2 = kNegInf;
    int any_nan = 0;
    for (int j = 0; j < kLanes; ++j) {
      c2 = std::max(std::max(c2, t2[j]), std::min(c1, t1[j]));
      c1 = std::max(c1, t1[j]);
      any_nan |= nan_seen[j];
    }
    if (any_nan && first_nan < 0) {
      for (int64_t k = 0; k < n; ++k)
        if (x[k] != x[k]) { first_nan = c0 + k; break; }
    }
    second = std::max(std::max(second, c2), std::min(m, c1));
    if (c1 > m) {  // strict: an equal later maximum keeps the earlier index
      for (int64_t k = 0; k < n; ++k)
        if (x[k] == c1) { best = c0 + k; break; }
      if (m != kNegInf) {  // rescale sums from m to c1 (nothing to rescale while m is -inf)
        const double delta = static_cast<double>(m) - c1;
        const double scale = std::exp(delta);
        s1 = (s1 + delta * s0) * scale;
        s0 *= scale;
      }
      m = c1;
    }
    if (m == kNegInf || m == std::numeric_limits<float>::infinity()) continue;  // special rows: no sums
    float a0[kLanes], a1[kLanes];
    for (int j = 0; j < kLanes; ++j) a0[j] = a1[j] = 0.0f;
    i = 0;
    for (; i + kLanes <= n; i += kLanes) {
      for (int j = 0; j < kLanes; ++j) {
        float d = x[i + j] - m;
        d = d > -88.0f ? d : -88.0f;  // also maps NaN and -inf away; exp(-88) == 0 exactly here
        const float e = exp_nonpos(d);
        a0[j] += e;
        a1[j] += e * d;
      }
    }
    for (; i < n; ++i) {
      float d = x[i] - m;
      d = d > -88.0f ? d : -88.0f;
      const float e = exp_nonpos(d);
      a0[0] += e;
      a1[0] += e * d;
    }
    for (int j = 0; j < kLanes; ++j) s0 += a0[j], s1 += a1[j];
  }
  RowStats r;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  if (first_nan >= 0) return {nan, nan, nan, nan, first_nan};
  if (!std::isfinite(m)) return {nan, nan, nan, m, m > 0 ? best : 0};
  const double log_s0 = std::log(s0);
  r.lse = static_cast<float>(m + log_s0);
  r.max_prob = static_cast<float>(1.0 / s0);
  r.entropy = static_cast<float>(std::max(0.0, log_s0 - s1 / s0));
  r.margin = static_cast<float>((1.0 - std::exp(static_cast<double>(second) - m)) / s0);
  r.argmax = best;
  return r;
}

void token_stats_cpu(std::uintptr_t logits, int64_t B, int64_t V, int64_t row_stride, int dtype,
                     std::uintptr_t out_f32, std::uintptr_t out_argmax) {
  const char* base = ptr<const char>(logits);
  float* of = ptr<float>(out_f32);  // [4, B]: entropy, max_prob, margin, logsumexp
  int64_t* oi = ptr<int64_t>(out_argmax);
  const int64_t esize = dtype_size(dtype);
  py::gil_scoped_release release;
#pragma omp parallel
  {
    std::vector<float> buf(kChunk);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      const RowStats r = row_stats(base + b * row_stride * esize, dtype, V, buf.data());
      of[b] = r.entropy;
      of[B + b] = r.max_prob;
      of[2 * B + b] = r.margin;
      of[3 * B + b] = r.lse;
      oi[b] = r.argmax;
    }
  }
}

FSGEN_DEF(token_stats_cpu, "ops.token_stats on CPU (see op_args.h for the arguments)", FSGEN_TOKEN_STATS_ARGS);

}  // namespace
}  // namespace fsgen
