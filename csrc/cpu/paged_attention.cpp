// ops.paged_attention on CPU: ragged queries over paged K/V, read in place (no gather of the pages).
//
// One OpenMP task per (up to kTokens new tokens of a sequence, KV head): their queries in the GROUP
// heads sharing that KV head walk the keys in blocks of kBlock, so every key and value row is loaded
// (and converted to float) once for all of them (decode, K+1 verification, GQA); each query keeps its
// own visible range (causal, window) and a blockwise online softmax in float32.
// Semantics (causal bottom-right alignment, sliding window, GQA): reference/paged_attention.py.
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu_math.h"
#include "op_args.h"

namespace fsgen {
namespace {

constexpr int kBlock = 32;   // keys per softmax block
constexpr int kTokens = 8;   // query tokens of one sequence per task

inline void load_row(const void* base, int dtype, int64_t offset, int64_t D, float* dst) {
  if (dtype == kFloat32) {
    std::memcpy(dst, static_cast<const float*>(base) + offset, static_cast<size_t>(D) * sizeof(float));
  } else {
    to_float(static_cast<const uint16_t*>(base) + offset, dtype, D, dst);
  }
}

inline void store_row(void* base, int dtype, int64_t offset, int64_t D, const float* src) {
  if (dtype == kFloat32) {
    std::memcpy(static_cast<float*>(base) + offset, src, static_cast<size_t>(D) * sizeof(float));
    return;
  }
  uint16_t* dst = static_cast<uint16_t*>(base) + offset;
  for (int64_t d = 0; d < D; ++d) dst[d] = dtype == kBFloat16 ? float_to_bf16(src[d]) : float_to_fp16(src[d]);
}

struct Geometry {
  int64_t H, Hkv, D, page_size, pt_stride;
  int64_t q_s0, q_s1, k_s0, k_s1, k_s2, v_s0, v_s1, v_s2, o_s0, o_s1;
  int dtype;
  float scale;
  bool causal;
  int64_t window;
};

struct Scratch {
  std::vector<float> q, k, kt, v, s, acc, m, l;
  std::vector<int64_t> lo, hi;
  void resize(int64_t R, int64_t D) {
    q.resize(R * D);
    k.resize(kBlock * D);
    kt.resize(D * kBlock);
    v.resize(D);
    s.resize(R * kBlock);
    acc.resize(R * D);
    m.resize(R);
    l.resize(R);
    lo.resize(R);
    hi.resize(R);
  }
};

// Attention of tokens [t0, t1) of one sequence (token t at position pos0 + t - t0; `L` keys; page-table
// row `pt_row`) for the G query heads of KV head `kvh`: rows r = (t - t0) * G + h share every key and
// value row loaded, each with its own visible range [lo_r, hi_r).
FSGEN_SIMD_CLONES void attend_rows(const char* qb, const char* kb, const char* vb, char* ob, const int32_t* pt_row, int64_t t0,
                 int64_t t1, int64_t pos0, int64_t L, int64_t kvh, const Geometry& g, Scratch& sc) {
  const int64_t G = g.H / g.Hkv, D = g.D, R = (t1 - t0) * G;
  int64_t lo_all = L, hi_all = 0;
  for (int64_t r = 0; r < R; ++r) {
    const int64_t tok = t0 + r / G, h = r % G, pos = pos0 + r / G;
    float* qr = sc.q.data() + r * D;
    load_row(qb, g.dtype, tok * g.q_s0 + (kvh * G + h) * g.q_s1, D, qr);
    for (int64_t d = 0; d < D; ++d) qr[d] *= g.scale;
    sc.hi[r] = g.causal ? std::min(L, pos + 1) : L;
    sc.lo[r] = g.window > 0 ? std::max<int64_t>(0, pos - g.window + 1) : 0;
    lo_all = std::min(lo_all, sc.lo[r]);
    hi_all = std::max(hi_all, sc.hi[r]);
    sc.m[r] = kNegInf;
    sc.l[r] = 0.f;
  }
  std::fill(sc.acc.begin(), sc.acc.begin() + R * D, 0.f);
  for (int64_t n0 = lo_all; n0 < hi_all; n0 += kBlock) {
    const int nb = static_cast<int>(std::min<int64_t>(kBlock, hi_all - n0));
    for (int t = 0; t < nb; ++t) {
      const int64_t n = n0 + t;
      const int64_t page = pt_row[n / g.page_size], off = n % g.page_size;
      load_row(kb, g.dtype, page * g.k_s0 + off * g.k_s1 + kvh * g.k_s2, D, sc.k.data() + t * D);
    }
    // K^T of the block, so each row's scores are one loop over the keys (vectorised, no reductions)
    for (int t = 0; t < nb; ++t)
      for (int64_t d = 0; d < D; ++d) sc.kt[d * kBlock + t] = sc.k[t * D + d];
    for (int64_t r = 0; r < R; ++r) {
      float* s = sc.s.data() + r * kBlock;
      const float* qr = sc.q.data() + r * D;
      for (int t = 0; t < kBlock; ++t) s[t] = 0.f;
      for (int64_t d = 0; d < D; ++d) {
        const float qd = qr[d];
        const float* ktd = sc.kt.data() + d * kBlock;
        for (int t = 0; t < kBlock; ++t) s[t] += qd * ktd[t];
      }
      float bm = kNegInf;
      for (int t = 0; t < nb; ++t) {
        const int64_t n = n0 + t;
        s[t] = (n >= sc.lo[r] && n < sc.hi[r]) ? s[t] : kNegInf;
        bm = s[t] > bm ? s[t] : bm;
      }
      if (bm == kNegInf) {  // nothing visible to this row in the block
        for (int t = 0; t < nb; ++t) s[t] = 0.f;
        continue;
      }
      const float m_new = std::max(sc.m[r], bm);
      const float alpha = sc.m[r] == kNegInf ? 0.f : exp_nonpos(sc.m[r] - m_new);
      float sum = 0.f;
      for (int t = 0; t < nb; ++t) {
        s[t] = s[t] == kNegInf ? 0.f : exp_nonpos(s[t] - m_new);
        sum += s[t];
      }
      sc.l[r] = sc.l[r] * alpha + sum;
      sc.m[r] = m_new;
      float* acc = sc.acc.data() + r * D;
      for (int64_t d = 0; d < D; ++d) acc[d] *= alpha;
    }
    for (int t = 0; t < nb; ++t) {
      const int64_t n = n0 + t;
      const int64_t page = pt_row[n / g.page_size], off = n % g.page_size;
      load_row(vb, g.dtype, page * g.v_s0 + off * g.v_s1 + kvh * g.v_s2, D, sc.v.data());
      for (int64_t r = 0; r < R; ++r) {
        const float p = sc.s[r * kBlock + t];
        if (p == 0.f) continue;
        float* acc = sc.acc.data() + r * D;
        for (int64_t d = 0; d < D; ++d) acc[d] += p * sc.v[d];
      }
    }
  }
  for (int64_t r = 0; r < R; ++r) {
    float* acc = sc.acc.data() + r * D;
    const float inv = sc.l[r] > 0.f ? 1.f / sc.l[r] : 0.f;  // no visible key: zeros, as the Triton kernel
    for (int64_t d = 0; d < D; ++d) acc[d] *= inv;
    store_row(ob, g.dtype, (t0 + r / G) * g.o_s0 + (kvh * G + r % G) * g.o_s1, D, acc);
  }
}

// The kernel reads q/out rows cu_q_lens[b]..cu_q_lens[b+1] and the pages holding keys
// [0, seq_lens[b]); a bad value would read or write outside the tensors, so every one is checked here
// first (O(batch + pages used), microseconds: no torch op on the hot path). Throws ValueError.
void check_ragged_args(const int32_t* lens, const int32_t* cu, const int32_t* pt, int64_t B, int64_t N,
                       int64_t num_pages, int64_t page_size, int64_t max_pages, int64_t pt_stride) {
  auto fail = [](const std::string& msg) { throw std::invalid_argument("paged_attention: " + msg); };
  if (page_size <= 0) fail("k_cache has page size " + std::to_string(page_size) + "; it must hold at least 1 slot");
  if (cu[0] < 0 || cu[B] > N)
    fail("cu_q_lens must run from 0 to at most the " + std::to_string(N) + " query rows of q, got cu_q_lens[0]=" +
         std::to_string(cu[0]) + ", cu_q_lens[-1]=" + std::to_string(cu[B]) + "; pass the prefix sums of the new "
         "tokens per sequence");
  for (int64_t b = 0; b < B; ++b) {
    const int64_t q_len = static_cast<int64_t>(cu[b + 1]) - cu[b], L = lens[b];
    const std::string at = "[" + std::to_string(b) + "]";
    if (q_len < 0)
      fail("cu_q_lens decreases at sequence " + std::to_string(b) + " (" + std::to_string(cu[b]) + " then " +
           std::to_string(cu[b + 1]) + "); it must be non-decreasing prefix sums");
    if (L < q_len || L > max_pages * page_size)
      fail("seq_lens" + at + "=" + std::to_string(L) + " is out of range [" + std::to_string(q_len) + ", " +
           std::to_string(max_pages * page_size) + "]: it counts the sequence's new tokens (" +
           std::to_string(q_len) + ") and must fit its page_table row (" + std::to_string(max_pages) + " pages of " +
           std::to_string(page_size) + ")");
    for (int64_t p = 0; p < (L + page_size - 1) / page_size; ++p) {
      const int32_t page = pt[b * pt_stride + p];
      if (page < 0 || page >= num_pages)
        fail("page_table[" + std::to_string(b) + ", " + std::to_string(p) + "]=" + std::to_string(page) +
             " is not a page of the cache (k_cache has " + std::to_string(num_pages) + " pages); pass page ids "
             "in [0, " + std::to_string(num_pages) + ")");
    }
  }
}

void paged_attention_cpu(std::uintptr_t q, std::uintptr_t k_cache, std::uintptr_t v_cache, std::uintptr_t page_table,
                         std::uintptr_t seq_lens, std::uintptr_t cu_q_lens, std::uintptr_t out, int64_t B, int64_t N,
                         int64_t H, int64_t Hkv, int64_t D, int64_t num_pages, int64_t page_size, int64_t max_pages,
                         int64_t pt_stride, int64_t q_s0, int64_t q_s1, int64_t k_s0, int64_t k_s1, int64_t k_s2,
                         int64_t v_s0, int64_t v_s1, int64_t v_s2, int64_t o_s0, int64_t o_s1, int dtype, double scale,
                         bool causal, int64_t window) {
  const Geometry g{H, Hkv, D, page_size, pt_stride, q_s0, q_s1, k_s0, k_s1, k_s2, v_s0, v_s1, v_s2, o_s0, o_s1,
                   dtype, static_cast<float>(scale), causal, window};
  const int32_t* lens = ptr<const int32_t>(seq_lens);
  const int32_t* cu = ptr<const int32_t>(cu_q_lens);
  const int32_t* pt = ptr<const int32_t>(page_table);
  check_ragged_args(lens, cu, pt, B, N, num_pages, page_size, max_pages, pt_stride);
  // Tasks: up to kTokens consecutive tokens of one sequence x one KV head. Decode and verification
  // rows then read each key once for all their queries; long prefills still split across threads.
  std::vector<int64_t> task_b, task_t0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = cu[b]; t < cu[b + 1]; t += kTokens) {
      task_b.push_back(b);
      task_t0.push_back(t);
    }
  const int64_t T = static_cast<int64_t>(task_b.size());
  const char* qb = ptr<const char>(q);
  const char* kb = ptr<const char>(k_cache);
  const char* vb = ptr<const char>(v_cache);
  char* ob = ptr<char>(out);
  py::gil_scoped_release release;
#pragma omp parallel
  {
    Scratch sc;
    sc.resize(kTokens * (H / Hkv), D);
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < T * Hkv; ++task) {
      const int64_t i = task / Hkv, kvh = task % Hkv, b = task_b[i], t0 = task_t0[i];
      const int64_t t1 = std::min<int64_t>(t0 + kTokens, cu[b + 1]);
      const int64_t q_len = cu[b + 1] - cu[b];
      const int64_t pos0 = lens[b] - q_len + (t0 - cu[b]);
      attend_rows(qb, kb, vb, ob, pt + b * pt_stride, t0, t1, pos0, lens[b], kvh, g, sc);
    }
  }
}

FSGEN_DEF(paged_attention_cpu, "ops.paged_attention on CPU (see op_args.h for the arguments)",
          FSGEN_PAGED_ATTENTION_ARGS);

}  // namespace
}  // namespace fsgen
