// The passes of the split-row sample / verify pipeline (see sample_split.cu for the whole): each
// runs over an R x S grid of (logical row, column split) blocks, or, for SELECT, one block per row.
#include <cuda_runtime.h>

#include "cuda_launch.h"
#include "fsgen.h"
#include "sample_split_rows.cuh"

namespace fsgen {
namespace sampling {
namespace split {
namespace {

// Add the block's shared histogram to the row's global one (non-zero bins only: few at levels 1, 2).
__device__ __forceinline__ void flush_hist(const BlockShared& sh, int bins, float* g) {
  __syncthreads();
  for (int i = threadIdx.x; i < bins; i += kThreads)
    if (sh.hist[i] != 0.f) atomicAdd(g + i, sh.hist[i]);
}

__device__ __forceinline__ void clear_hist(BlockShared& sh, int bins) {
  for (int i = threadIdx.x; i < bins; i += kThreads) sh.hist[i] = 0.f;
  __syncthreads();
}

// MAX: the split's (max, first index) of the cleaned logits; rows with an active top-k also count
// their level-0 key histogram (counts need no zmax).
__global__ void __launch_bounds__(kThreads) max_pass(Rows a) {
  __shared__ BlockShared sh;
  const int64_t r = blockIdx.x / a.S, s = blockIdx.x % a.S;
  if (past_draft(a, r)) return;
  const int64_t b = r / a.P;
  const void* row = row_ptr(a, r);
  const int64_t lo = s * a.CH, hi = min(lo + a.CH, a.V);
  float xmax = -INFINITY;
  int64_t arg = a.V;
  for (int64_t j = lo + threadIdx.x; j < hi; j += kThreads) {
    const float x = clean(load_dev(row, a.dtype, j));
    if (x > xmax || arg == a.V) {
      xmax = x;
      arg = j;
    }
  }
  block_argmax(xmax, arg, sh);
  if (threadIdx.x == 0) a.part[blockIdx.x] = Partial{xmax, 0.f, 0.f, arg, 0};
  const float t = a.temperature[b];
  const int64_t k = a.top_k[b];
  if (!(t > 0.f && k > 0 && k < a.V)) return;
  const int bins = 1 << radix_bits(0);
  clear_hist(sh, bins);
  const uint32_t floor_key = float_key(-INFINITY) + 1;
  for (int64_t j = lo + threadIdx.x; j < hi; j += kThreads) {
    const uint32_t key = float_key(clean(load_dev(row, a.dtype, j)) / t);
    if (key >= floor_key) atomicAdd(&sh.hist[(key >> radix_shift(0)) & (bins - 1)], 1.f);
  }
  flush_hist(sh, bins, a.hist + r * kRadixBins);
}

// HIST: one radix level of the row's select in progress (skipped when none is).
__global__ void __launch_bounds__(kThreads) hist_pass(Rows a) {
  __shared__ BlockShared sh;
  const int64_t r = blockIdx.x / a.S, s = blockIdx.x % a.S;
  const SplitRow st = a.rows[r];
  if (st.skip || st.greedy || st.stage >= kStages) return;
  const int64_t b = r / a.P;
  const void* row = row_ptr(a, r);
  const float t = a.temperature[b];
  const bool mass = st.stage == 1;
  const int bins = 1 << radix_bits(st.level), shift = radix_shift(st.level);
  clear_hist(sh, bins);
  const int64_t lo = s * a.CH, hi = min(lo + a.CH, a.V);
  for (int64_t j = lo + threadIdx.x; j < hi; j += kThreads) {
    const float z = clean(load_dev(row, a.dtype, j)) / t;
    const uint32_t key = float_key(z);
    if (key >= st.floor_key && (key & st.mask) == st.prefix)
      atomicAdd(&sh.hist[(key >> shift) & (bins - 1)], mass ? __expf(z - st.zmax) : 1.f);
  }
  flush_hist(sh, bins, a.hist + r * kRadixBins);
}

// Start the top-p select over keys >= thr, or finish: the thresholds are final.
__device__ __forceinline__ void next_stage(SplitRow& st, float top_p) {
  if (st.stage == 0 && top_p < 1.f) {
    st.stage = 1;
    st.level = 0;
    st.prefix = st.mask = 0;
    st.floor_key = st.thr;
    st.target = -1.f;  // top_p x the top-k mass, known once the level-0 histogram is in
  } else {
    st.stage = kStages;
  }
}

// SELECT (one block per logical row): after MAX, merge the split maxima and set the row up; then
// (and after every HIST) run one radix level of the select in progress on the row's histogram.
__global__ void __launch_bounds__(kThreads) select_pass(Rows a, bool first) {
  __shared__ BlockShared sh;
  __shared__ SplitRow st_sh;
  const int64_t r = blockIdx.x;
  const int64_t b = r / a.P;
  const float t = a.temperature[b];
  const float top_p = a.top_p[b];
  if (first) {
    float xmax = -INFINITY;
    int64_t arg = a.V;
    for (int64_t s = threadIdx.x; s < a.S; s += kThreads) {
      const Partial p = a.part[r * a.S + s];
      if (p.v0 > xmax || (p.v0 == xmax && p.i0 < arg)) {
        xmax = p.v0;
        arg = p.i0;
      }
    }
    block_argmax(xmax, arg, sh);
    if (threadIdx.x == 0) {
      SplitRow st{};
      st.skip = past_draft(a, r);
      st.argmax = arg >= a.V ? 0 : arg;
      st.greedy = one_hot_row(t, xmax);
      st.zmax = st.greedy ? 0.f : xmax / t;
      st.thr = float_key(-INFINITY) + 1;
      st.floor_key = st.thr;
      const int64_t k = a.top_k[b];
      if (k > 0 && k < a.V) {
        st.stage = 0;
        st.target = static_cast<float>(k);
      } else {
        next_stage(st, top_p);
      }
      st_sh = st;
    }
  } else if (threadIdx.x == 0) {
    st_sh = a.rows[r];
  }
  __syncthreads();
  SplitRow st = st_sh;
  // After MAX only a top-k select has its histogram (level 0) ready; a top-p select starts with the
  // next HIST.
  if (st.skip || st.greedy || st.stage >= kStages || (first && st.stage != 0)) {
    if (threadIdx.x == 0 && first) a.rows[r] = st;
    return;
  }
  const int bins = 1 << radix_bits(st.level), shift = radix_shift(st.level);
  float* g = a.hist + r * kRadixBins;
  float local = 0.f;
  for (int i = threadIdx.x; i < bins; i += kThreads) {
    sh.hist[i] = g[i];
    local += g[i];
    g[i] = 0.f;  // the next level accumulates from zero
  }
  if (threadIdx.x == 0) sh.chosen = -1;
  __syncthreads();
  if (st.stage == 1 && st.level == 0) st.target = top_p * block_sum(local, sh);
  const BinChoice c = choose_bin(bins, st.target, sh);
  const int chosen = c.chosen;
  const float acc = c.acc;
  if (threadIdx.x != 0) return;
  uint32_t result = 0;
  bool done = false;
  if (chosen < 0) {
    result = st.floor_key;
    done = true;
  } else {
    st.target -= acc;
    st.prefix |= static_cast<uint32_t>(chosen) << shift;
    st.mask |= static_cast<uint32_t>(bins - 1) << shift;
    if (++st.level == 3) {
      result = st.prefix > st.floor_key ? st.prefix : st.floor_key;
      done = true;
    }
  }
  if (done) {
    if (st.stage == 0) {
      st.thr = result;
    } else if (result > st.thr) {
      st.thr = result;
    }
    next_stage(st, st.stage == 0 ? top_p : 1.f);
  }
  a.rows[r] = st;
}

// TOTAL (verify): the split's sum of kept weights.
__global__ void __launch_bounds__(kThreads) total_pass(Rows a) {
  __shared__ BlockShared sh;
  const int64_t r = blockIdx.x / a.S, s = blockIdx.x % a.S;
  const SplitRow st = a.rows[r];
  if (st.skip || st.greedy) return;
  const int64_t b = r / a.P;
  const void* row = row_ptr(a, r);
  const float t = a.temperature[b];
  const RowFilter f = filter_of(st, t, a.min_p[b]);
  const int64_t lo = s * a.CH, hi = min(lo + a.CH, a.V);
  float local = 0.f;
  for (int64_t j = lo + threadIdx.x; j < hi; j += kThreads) local += weight_dev(f, clean(load_dev(row, a.dtype, j)) / t);
  local = block_sum(local, sh);
  if (threadIdx.x == 0) a.tot[blockIdx.x] = local;
}

// RACE: the split's exponential race over the kept weights (sample) or over p and the residual
// max(0, p - q) with shared noise (verify, positions before num_draft[b]; the bonus position races p).
__global__ void __launch_bounds__(kThreads) race_pass(Rows a, const int64_t* draft, int64_t d_s0, const char* q_base,
                                                      int64_t q_s0, int64_t q_s1, int q_dtype, const int64_t* seed_ptr) {
  __shared__ BlockShared sh;
  const int64_t r = blockIdx.x / a.S, s = blockIdx.x % a.S;
  const SplitRow st = a.rows[r];
  if (st.skip || st.greedy) return;
  const int64_t b = r / a.P, i = r % a.P;
  const void* row = row_ptr(a, r);
  const float t = a.temperature[b];
  const uint64_t seed = static_cast<uint64_t>(*seed_ptr);
  const bool verify = a.num_draft != nullptr;
  float inv_total = 1.f;
  int64_t x = -1;
  bool resid = false;
  const void* qrow = nullptr;
  if (verify) {
    inv_total = 1.f / row_total(a, r, sh);
    resid = i < min(max(a.num_draft[b], static_cast<int64_t>(0)), a.K);
    if (resid) {
      x = draft[b * d_s0 + i];
      qrow = q_base ? q_base + (b * q_s0 + i * q_s1) * elem_size(q_dtype) : nullptr;
    }
  }
  const RowFilter f = filter_of(st, t, a.min_p[b]);
  const int64_t lo = s * a.CH, hi = min(lo + a.CH, a.V);
  RaceBest w = race_columns(row, a.dtype, f, t, inv_total, resid, qrow, q_dtype, x, seed, static_cast<uint64_t>(r),
                            lo + threadIdx.x, hi);
  if (verify) w.rsum = block_sum(w.rsum, sh);
  block_argmax(w.best_p, w.arg_p, sh);
  if (verify) block_argmax(w.best_r, w.arg_r, sh);
  if (threadIdx.x == 0) a.part[blockIdx.x] = Partial{w.best_p, w.best_r, w.rsum, w.arg_p, w.arg_r};
}

}  // namespace

void launch_argmax(const char* where, const Rows& a, int64_t R, int device, std::uintptr_t stream) {
  launch(where, device, stream, static_cast<unsigned>(R * a.S), kThreads, 0, max_pass, a);
  launch(where, device, stream, static_cast<unsigned>(R), kThreads, 0, select_pass, a, true);
}

void launch_thresholds(const char* where, const Rows& a, int64_t R, int device, std::uintptr_t stream) {
  for (int step = 0; step < 5; ++step) {  // top-k levels 1, 2 and top-p levels 0, 1, 2
    launch(where, device, stream, static_cast<unsigned>(R * a.S), kThreads, 0, hist_pass, a);
    launch(where, device, stream, static_cast<unsigned>(R), kThreads, 0, select_pass, a, false);
  }
}

void launch_race(const char* where, const Rows& a, int64_t R, const VerifyExtra* v, const int64_t* seed, int device,
                 std::uintptr_t stream) {
  const unsigned grid = static_cast<unsigned>(R * a.S);
  if (v == nullptr) {
    launch(where, device, stream, grid, kThreads, 0, race_pass, a, static_cast<const int64_t*>(nullptr),
           static_cast<int64_t>(0), static_cast<const char*>(nullptr), static_cast<int64_t>(0),
           static_cast<int64_t>(0), 0, seed);
    return;
  }
  launch(where, device, stream, grid, kThreads, 0, total_pass, a);
  launch(where, device, stream, grid, kThreads, 0, race_pass, a, ptr<const int64_t>(v->draft), v->d_s0,
         v->q ? ptr<const char>(v->q) : nullptr, v->q_s0, v->q_s1, v->q_dtype, seed);
}

}  // namespace split
}  // namespace sampling
}  // namespace fsgen
