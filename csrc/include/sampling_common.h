// Shared pieces of ops.sample / ops.verify for the CPU and CUDA kernels: the counter-based RNG,
// the monotone float key used by the radix-select filters, and the host (CPU) row filter.
//
// Filters are thresholds, never sorts: top-k and top-p each pick the largest key T such that the
// weight (count, resp. probability mass) of {key >= T} reaches the target, by a 3-level radix
// select (11 + 11 + 10 bits, one pass over the row per level). The token is then drawn by an
// exponential race on CUDA (parallel) and by inverse CDF on the CPU (sequential, one uniform per
// row). Semantics follow
// fsgen_engine/reference/sample.py (order top-k, top-p, min-p; boundary ties kept; NaN = -inf;
// a row with a +inf yields its first +inf; a row with no finite entry yields token 0).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define FSGEN_HD __host__ __device__ __forceinline__
#else
#define FSGEN_HD inline
#endif

namespace fsgen {
namespace sampling {

FSGEN_HD int radix_bits(int level) { return level < 2 ? 11 : 10; }
FSGEN_HD int radix_shift(int level) { return level == 0 ? 21 : (level == 1 ? 10 : 0); }
FSGEN_HD int64_t elem_size(int dtype) { return dtype == 0 ? 4 : 2; }
constexpr int kRadixBins = 2048;

// Random streams (a stream id keeps the different uses of one seed independent).
constexpr uint64_t kStreamRace = 1;     // exponential race noise, counter (row, position, column)
constexpr uint64_t kStreamAccept = 2;   // verify acceptance uniforms, counter (row, position)

FSGEN_HD uint64_t mix64(uint64_t x) {  // splitmix64 finaliser: a good 64-bit bijective hash
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

// Uniform in the open interval (0, 1), 24 bits, from (seed, stream, a, b).
FSGEN_HD float uniform01(uint64_t seed, uint64_t stream, uint64_t a, uint64_t b) {
  uint64_t h = mix64(seed ^ mix64(stream * 0x9e3779b97f4a7c15ull + a));
  h = mix64(h + b * 0xd1b54a32d192ed03ull);
  return (static_cast<float>(h >> 40) + 0.5f) * (1.0f / 16777216.0f);
}

// Exp(1) variate for the race: argmax_i w_i / E_i samples i with probability w_i / sum(w).
FSGEN_HD float exp1(uint64_t seed, uint64_t a, uint64_t b) { return -logf(uniform01(seed, kStreamRace, a, b)); }

// Order-preserving map float -> uint32 (NaN must be replaced first).
FSGEN_HD uint32_t float_key(float f) {
  uint32_t u;
#ifdef __CUDA_ARCH__
  u = __float_as_uint(f);
#else
  std::memcpy(&u, &f, sizeof(u));
#endif
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

FSGEN_HD float clean(float x) { return x != x ? -INFINITY : x; }

// Rows whose distribution is one-hot on `argmax` (the lowest index of the row max xmax, NaN cleaned):
// greedy (t == 0); a +inf logit (it alone is a candidate, whatever the temperature and filters: the
// first +inf wins); no finite entry (all -inf / NaN: token 0).
FSGEN_HD bool one_hot_row(float t, float xmax) { return t == 0.f || !(xmax > -INFINITY && xmax < INFINITY); }

// Result of filtering one row: token j is kept iff finite, key(z_j) >= thr_key and
// exp(z_j - zmax) >= min_p. Weights are exp(z_j - zmax); total is their sum over kept tokens.
struct RowFilter {
  float zmax;         // max of z = x / t
  int64_t argmax;     // lowest index of the max of x
  uint32_t thr_key;   // combined top-k / top-p threshold
  float min_p;
  float inv_t;        // unused when greedy
  float t;
  bool greedy;        // one_hot_row: the distribution is one-hot on `argmax`
  double total;       // sum of kept weights (sampled rows)

  FSGEN_HD bool kept(float z) const {
    return z > -INFINITY && float_key(z) >= thr_key && (min_p <= 0.f || expf(z - zmax) >= min_p);
  }
};

}  // namespace sampling
}  // namespace fsgen

#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace fsgen {
namespace sampling {

// CUDA side: one block of kThreads threads per row; the row is re-read from global memory (L2)
// by every pass. Mirrors filter_row / radix_select of the CPU code below.
constexpr int kThreads = 512;

struct BlockShared {
  float hist[kRadixBins];
  float scan[kThreads];
  float red_v[32];
  int red_i[32];
  int chosen;
  float chosen_acc;
};

__device__ __forceinline__ float load_dev(const void* base, int dtype, int64_t i) {
  if (dtype == 1) return __half2float(__ushort_as_half(static_cast<const unsigned short*>(base)[i]));
  if (dtype == 2) return __uint_as_float(static_cast<uint32_t>(static_cast<const unsigned short*>(base)[i]) << 16);
  return static_cast<const float*>(base)[i];
}

__device__ __forceinline__ float block_sum(float v, BlockShared& sh) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) sh.red_v[warp] = v;
  __syncthreads();
  float r = 0.f;
  for (int w = 0; w < kThreads / 32; ++w) r += sh.red_v[w];
  __syncthreads();
  return r;
}

// Block argmax: larger value wins, ties -> lower index. Every thread gets the result.
__device__ __forceinline__ void block_argmax(float& v, int64_t& idx, BlockShared& sh) {
  int i = static_cast<int>(idx);
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, i, o);
    if (ov > v || (ov == v && oi < i)) {
      v = ov;
      i = oi;
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) {
    sh.red_v[warp] = v;
    sh.red_i[warp] = i;
  }
  __syncthreads();
  v = sh.red_v[0];
  i = sh.red_i[0];
  for (int w = 1; w < kThreads / 32; ++w) {
    if (sh.red_v[w] > v || (sh.red_v[w] == v && sh.red_i[w] < i)) {
      v = sh.red_v[w];
      i = sh.red_i[w];
    }
  }
  __syncthreads();
  idx = i;
}

// The bin of sh.hist[0, bins) where the weight summed from the top bin down first reaches `target`
// (chosen = -1 if it never does) and the weight of the bins above it (acc). Every thread gets both.
struct BinChoice {
  int chosen;
  float acc;
};

// sh.chosen must be -1 on entry (set before the __syncthreads that ends the histogram fill).
__device__ __forceinline__ BinChoice choose_bin(int bins, float target, BlockShared& sh) {
  // Each thread owns `per` consecutive bins; a suffix scan over threads gives the weight above.
  const int per = bins / kThreads;
  float local = 0.f;
  for (int b = 0; b < per; ++b) local += sh.hist[threadIdx.x * per + b];
  sh.scan[threadIdx.x] = local;
  __syncthreads();
  for (int off = 1; off < kThreads; off <<= 1) {
    const float add = threadIdx.x + off < kThreads ? sh.scan[threadIdx.x + off] : 0.f;
    __syncthreads();
    sh.scan[threadIdx.x] += add;
    __syncthreads();
  }
  const float above = sh.scan[threadIdx.x] - local;  // weight of bins owned by higher threads
  if (above < target && above + local >= target) {
    float a = above;
    for (int b = per - 1; b >= 0; --b) {
      const float h = sh.hist[threadIdx.x * per + b];
      if (a + h >= target || b == 0) {
        sh.chosen = threadIdx.x * per + b;
        sh.chosen_acc = a;
        break;
      }
      a += h;
    }
  }
  __syncthreads();
  const BinChoice c{sh.chosen, sh.chosen_acc};
  __syncthreads();
  return c;
}

// Largest key T with weight(keys >= max(T, floor_key)) >= target; mass weights exp(z - zmax)
// when `mass`, else counts. Same contract as the CPU radix_select.
__device__ __forceinline__ uint32_t radix_select_dev(const void* row, int dtype, int64_t n, float t, float zmax, bool mass,
                                     uint32_t floor_key, float target, BlockShared& sh) {
  uint32_t prefix = 0, mask = 0;
  for (int level = 0; level < 3; ++level) {
    const int bins = 1 << radix_bits(level);
    const int shift = radix_shift(level);
    for (int i = threadIdx.x; i < bins; i += kThreads) sh.hist[i] = 0.f;
    if (threadIdx.x == 0) sh.chosen = -1;
    __syncthreads();
    for (int64_t j = threadIdx.x; j < n; j += kThreads) {
      const float z = clean(load_dev(row, dtype, j)) / t;
      const uint32_t k = float_key(z);
      if (k >= floor_key && (k & mask) == prefix)
        atomicAdd(&sh.hist[(k >> shift) & (bins - 1)], mass ? __expf(z - zmax) : 1.f);
    }
    __syncthreads();
    const BinChoice c = choose_bin(bins, target, sh);
    const int chosen = c.chosen;
    const float acc = c.acc;
    if (chosen < 0) return floor_key;
    target -= acc;
    prefix |= static_cast<uint32_t>(chosen) << shift;
    mask |= static_cast<uint32_t>(bins - 1) << shift;
  }
  return prefix > floor_key ? prefix : floor_key;
}

// Block-wide filter of one row (see filter_row on the CPU side); every thread gets the result.
__device__ __forceinline__ RowFilter filter_row_dev(const void* row, int dtype, int64_t n, float t, int64_t top_k, float top_p,
                                    float min_p, BlockShared& sh) {
  RowFilter f{};
  f.t = t;
  f.min_p = min_p;
  float xmax = -INFINITY;
  int64_t arg = n;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) {
    const float x = clean(load_dev(row, dtype, j));
    if (x > xmax || arg == n) {  // j increases per thread: the first max is kept
      xmax = x;
      arg = j;
    }
  }
  block_argmax(xmax, arg, sh);
  if (arg >= n) arg = 0;
  f.argmax = arg;
  f.greedy = one_hot_row(t, xmax);
  if (f.greedy) return f;
  f.zmax = xmax / t;
  uint32_t thr = float_key(-INFINITY) + 1;
  if (top_k > 0 && top_k < n) thr = radix_select_dev(row, dtype, n, t, f.zmax, false, thr, static_cast<float>(top_k), sh);
  float local = 0.f;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) {
    const float z = clean(load_dev(row, dtype, j)) / t;
    if (float_key(z) >= thr) local += __expf(z - f.zmax);
  }
  const float total_k = block_sum(local, sh);
  if (top_p < 1.f) {
    const uint32_t tp = radix_select_dev(row, dtype, n, t, f.zmax, true, thr, top_p * total_k, sh);
    if (tp > thr) thr = tp;
  }
  f.thr_key = thr;
  local = 0.f;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) {
    const float z = clean(load_dev(row, dtype, j)) / t;
    if (f.kept(z)) local += __expf(z - f.zmax);
  }
  f.total = block_sum(local, sh);
  return f;
}

__device__ __forceinline__ float weight_dev(const RowFilter& f, float z) {
  return f.kept(z) ? __expf(z - f.zmax) : 0.f;
}

// This thread's part of the exponential race over columns lo, lo + kThreads, ... < hi of one row:
// over p_j = weight_j * inv_total and, when `resid`, over the residual max(0, p_j - q_j) (q the
// draft row, or one-hot on x without one) with the same noise E(seed, ctr, j); rsum sums the residual.
// Shared by the one-block verify / sample kernels and the split-row race, so both draw alike.
struct RaceBest {
  float best_p = -1.f, best_r = -1.f, rsum = 0.f;
  int64_t arg_p = 0, arg_r = 0;
};

__device__ __forceinline__ RaceBest race_columns(const void* row, int dtype, const RowFilter& f, float t,
                                                 float inv_total, bool resid, const void* qrow, int q_dtype, int64_t x,
                                                 uint64_t seed, uint64_t ctr, int64_t lo, int64_t hi) {
  RaceBest b;
  for (int64_t j = lo; j < hi; j += kThreads) {
    const float p = weight_dev(f, clean(load_dev(row, dtype, j)) / t) * inv_total;
    float r = 0.f;
    if (resid) {
      const float qj = qrow ? load_dev(qrow, q_dtype, j) : (j == x ? 1.f : 0.f);
      r = fmaxf(p - qj, 0.f);
      b.rsum += r;
    }
    if (p > 0.f || r > 0.f) {
      const float e = exp1(seed, ctr, static_cast<uint64_t>(j));
      if (p / e > b.best_p) {
        b.best_p = p / e;
        b.arg_p = j;
      }
      if (r > 0.f && r / e > b.best_r) {
        b.best_r = r / e;
        b.arg_r = j;
      }
    }
  }
  return b;
}

}  // namespace sampling
}  // namespace fsgen
#endif  // __CUDACC__

#ifndef __CUDACC__
#include <vector>

#include "cpu_math.h"

namespace fsgen {
namespace sampling {

// One radix level: histogram of the keys (>= floor_key, matching prefix under mask) by the level's
// bits, then the bin where the weight from the top reaches `target`; -1 if it never does.
inline int radix_level(const uint32_t* keys, const float* w, int64_t n, uint32_t floor_key, uint32_t prefix,
                       uint32_t mask, int level, double& target) {
  double hist[kRadixBins];
  const int bins = 1 << radix_bits(level);
  const int shift = radix_shift(level);
  for (int i = 0; i < bins; ++i) hist[i] = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    const uint32_t k = keys[j];
    if (k >= floor_key && (k & mask) == prefix) hist[(k >> shift) & (bins - 1)] += w ? w[j] : 1.0;
  }
  double acc = 0.0;
  for (int b = bins - 1; b >= 0; --b) {
    if (acc + hist[b] >= target) {
      target -= acc;
      return b;
    }
    acc += hist[b];
  }
  return -1;
}

// Largest key T with sum(weight over keys >= max(T, floor_key)) >= target; floor_key if the
// target is never reached (float rounding). keys/w hold the row; w == nullptr means count.
// Level 0 reads the whole row; the candidates of its chosen bin (usually a small fraction) are then
// gathered into ck/cw so levels 1 and 2 read only them.
inline uint32_t radix_select(const uint32_t* keys, const float* w, int64_t n, uint32_t floor_key, double target,
                             std::vector<uint32_t>& ck, std::vector<float>& cw) {
  int b = radix_level(keys, w, n, floor_key, 0, 0, 0, target);
  if (b < 0) return floor_key;
  uint32_t prefix = static_cast<uint32_t>(b) << radix_shift(0);
  uint32_t mask = static_cast<uint32_t>((1 << radix_bits(0)) - 1) << radix_shift(0);
  ck.clear();
  cw.clear();
  for (int64_t j = 0; j < n; ++j) {
    if (keys[j] >= floor_key && (keys[j] & mask) == prefix) {
      ck.push_back(keys[j]);
      if (w) cw.push_back(w[j]);
    }
  }
  const int64_t m = static_cast<int64_t>(ck.size());
  for (int level = 1; level < 3; ++level) {
    b = radix_level(ck.data(), w ? cw.data() : nullptr, m, floor_key, prefix, mask, level, target);
    if (b < 0) return floor_key;
    prefix |= static_cast<uint32_t>(b) << radix_shift(level);
    mask |= static_cast<uint32_t>((1 << radix_bits(level)) - 1) << radix_shift(level);
  }
  return prefix > floor_key ? prefix : floor_key;
}

// Per-thread scratch for one row.
struct RowScratch {
  std::vector<float> z, w;
  std::vector<uint32_t> keys;
  std::vector<uint32_t> cand_keys;  // radix-select candidates after level 0
  std::vector<float> cand_w;
  // After a top-k filter: the survivors' indices and weights (w holds the same weights densely).
  std::vector<int64_t> surv;
  std::vector<uint32_t> surv_keys;
  std::vector<float> surv_w;
  bool sparse = false;
  void resize(int64_t n) {
    if (static_cast<int64_t>(z.size()) < n) {
      z.resize(n);
      w.resize(n);
      keys.resize(n);
      cand_keys.reserve(n);
      cand_w.reserve(n);
      surv.reserve(n);
    }
  }
};

// Sum of w[0..n) in kLanes float accumulators (vectorises), added up in double.
inline double lane_sum(const float* w, int64_t n) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) lanes[j] += w[i + j];
  double total = 0.0;
  for (; i < n; ++i) total += w[i];
  for (int j = 0; j < kLanes; ++j) total += lanes[j];
  return total;
}

// Top-k survivors (keys >= thr, usually about k of n): top-p and min-p then run on them alone.
// Fills s.surv / s.surv_keys / s.surv_w and f.thr_key / f.total.
inline void filter_survivors(const float* z, const uint32_t* keys, int64_t n, uint32_t thr, float zmax, float top_p,
                             float min_p, RowScratch& s, RowFilter& f) {
  s.surv.clear();
  for (int64_t j = 0; j < n; ++j)
    if (keys[j] >= thr) s.surv.push_back(j);
  const int64_t m = static_cast<int64_t>(s.surv.size());
  s.surv_keys.resize(m);
  s.surv_w.resize(m);
  double total = 0.0;
  for (int64_t i = 0; i < m; ++i) {
    s.surv_keys[i] = keys[s.surv[i]];
    s.surv_w[i] = exp_nonpos(z[s.surv[i]] - zmax);
    total += s.surv_w[i];
  }
  if (top_p < 1.f) {
    const uint32_t tp = radix_select(s.surv_keys.data(), s.surv_w.data(), m, thr, static_cast<double>(top_p) * total,
                                     s.cand_keys, s.cand_w);
    if (tp > thr) thr = tp;
  }
  if (top_p < 1.f || min_p > 0.f) {
    total = 0.0;
    for (int64_t i = 0; i < m; ++i) {
      if (s.surv_keys[i] < thr || (min_p > 0.f && s.surv_w[i] < min_p)) s.surv_w[i] = 0.f;
      total += s.surv_w[i];
    }
  }
  f.thr_key = thr;
  f.total = total;
}

// Load a row, apply temperature and the filters. After the call (sampled rows) s.z holds z and
// s.w holds exp(z - zmax) for kept tokens, 0 otherwise; every loop but the radix selects' is a
// plain float loop the compiler vectorises.
FSGEN_SIMD_CLONES inline RowFilter filter_row(const void* row, int dtype, int64_t n, float t, int64_t top_k, float top_p, float min_p,
                            RowScratch& s) {
  RowFilter f{};
  f.t = t;
  f.min_p = min_p;
  float* z = s.z.data();
  float* w = s.w.data();
  // fp32 rows are read in place; 16-bit rows are converted into z first (then cleaned in place)
  const float* src = z;
  if (dtype == kFloat32) {
    src = static_cast<const float*>(row);
  } else {
    to_float(row, dtype, n, z);
  }
  float lanes[kLanes];
  for (int j = 0; j < kLanes; ++j) lanes[j] = kNegInf;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float x = src[i + j] != src[i + j] ? kNegInf : src[i + j];  // NaN is never sampled
      z[i + j] = x;
      lanes[j] = x > lanes[j] ? x : lanes[j];
    }
  }
  float xmax = kNegInf;
  for (; i < n; ++i) {
    z[i] = clean(src[i]);
    xmax = z[i] > xmax ? z[i] : xmax;
  }
  for (int j = 0; j < kLanes; ++j) xmax = lanes[j] > xmax ? lanes[j] : xmax;
  int64_t arg = 0;  // lowest index of the max (the first +inf); token 0 when the row has no finite entry
  if (xmax > kNegInf)
    while (z[arg] != xmax) ++arg;
  f.argmax = arg;
  f.greedy = one_hot_row(t, xmax);
  if (f.greedy) return f;
  f.zmax = xmax / t;
  uint32_t thr = float_key(kNegInf) + 1;  // finite values only
  const bool use_k = top_k > 0 && top_k < n;
  uint32_t* keys = s.keys.data();
  if (use_k || top_p < 1.f) {
    for (int64_t j = 0; j < n; ++j) {
      z[j] = z[j] / t;
      keys[j] = float_key(z[j]);
    }
    if (use_k) thr = radix_select(keys, nullptr, n, thr, static_cast<double>(top_k), s.cand_keys, s.cand_w);
  } else {
    for (int64_t j = 0; j < n; ++j) z[j] = z[j] / t;
  }
  const float zmax = f.zmax;
  s.sparse = use_k;
  if (use_k) {
    filter_survivors(z, keys, n, thr, zmax, top_p, min_p, s, f);
    std::memset(w, 0, static_cast<size_t>(n) * sizeof(float));
    for (size_t i = 0; i < s.surv.size(); ++i) w[s.surv[i]] = s.surv_w[i];
    return f;
  }
  for (int64_t j = 0; j < n; ++j) w[j] = z[j] > kNegInf ? exp_nonpos(z[j] - zmax) : 0.f;
  double total = lane_sum(w, n);
  if (top_p < 1.f) {
    const uint32_t tp = radix_select(keys, w, n, thr, static_cast<double>(top_p) * total, s.cand_keys, s.cand_w);
    if (tp > thr) thr = tp;
  }
  f.thr_key = thr;
  if (top_p < 1.f || min_p > 0.f) {
    const bool by_key = top_p < 1.f;
    for (int64_t j = 0; j < n; ++j) {
      const bool drop = (by_key && keys[j] < thr) || (min_p > 0.f && w[j] < min_p);
      w[j] = drop ? 0.f : w[j];
    }
    total = lane_sum(w, n);
  }
  f.total = total;
  return f;
}

// Uniform in (0, 1) with 53 bits: inverse-CDF sampling needs resolution far below the smallest
// probability it must honour (24 bits would distort tokens rarer than ~6e-8).
inline double uniform01_53(uint64_t seed, uint64_t stream, uint64_t a, uint64_t b) {
  uint64_t h = mix64(seed ^ mix64(stream * 0x9e3779b97f4a7c15ull + a));
  h = mix64(h + b * 0xd1b54a32d192ed03ull);
  return (static_cast<double>(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

// Draw j with probability w[j] / total (w_j >= 0, total = their sum > 0) by inverse CDF: one
// uniform and one running sum, instead of one exponential variate per token (the race). Noise
// counter (a, 0) in the race's stream.
FSGEN_SIMD_CLONES inline int64_t draw(const float* w, int64_t n, double total, uint64_t seed, uint64_t a) {
  const double target = uniform01_53(seed, kStreamRace, a, 0) * total;
  double acc = 0.0;
  int64_t last = 0;
  for (int64_t j = 0; j < n; ++j) {
    if (w[j] > 0.f) {
      acc += w[j];
      last = j;
      if (acc > target) return j;
    }
  }
  return last;  // rounding left the target just above the sum: the last kept token
}

}  // namespace sampling
}  // namespace fsgen
#endif
