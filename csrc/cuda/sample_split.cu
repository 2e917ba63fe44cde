// Split-row ops.sample / ops.verify on CUDA for small batches.
//
// The one-block-per-row kernels (sample.cu, verify.cu) re-read each row from one SM for every step
// of the filter (row max, three radix levels for top-k, the top-k mass, three radix levels for
// top-p, the kept mass, the race): a batch of one uses one SM of 132. Here every step is a pass
// over an R x S grid (R logical rows, S column splits; a verify row b has K+1 logical rows, one per
// position), and a small per-row kernel between passes turns the pass's partial results into the
// next step's parameters, kept in the workspace (SplitRow). The steps and their arithmetic are those
// of filter_row_dev + the race (sampling_common.h), so a row gets the same thresholds, the same
// noise per (logical row, column) and hence the same token as the one-block kernel (up to the order
// of float sums). The host launches a fixed sequence (no host sync: rows that need fewer steps skip
// the rest), which also makes it graph-capturable:
//
//   memset(hist) · MAX (+ top-k level-0 counts) · SELECT · 5 x (HIST · SELECT) · [TOTAL] · RACE · FINAL
//
// (MAX · SELECT · FINAL only when the host knows every row is greedy: all_greedy.)
//
// Radix selects: top-k uses levels 0 (counted in MAX), 1, 2; top-p levels 0, 1, 2 over the keys
// >= the top-k threshold, its target top_p x (sum of its level-0 histogram = the top-k mass).
// Histograms are accumulated per block in shared memory and added to the row's global histogram
// (only non-zero bins); SELECT reads and clears it.
#include <cuda_runtime.h>

#include "cuda_launch.h"
#include "fsgen.h"
#include "sample_split.h"
#include "sampling_common.h"

namespace fsgen {
namespace sampling {
namespace {

// Per logical row, in the workspace.
struct SplitRow {
  float zmax;        // max of z = x / t
  float target;      // radix select: weight still to cover
  uint32_t floor_key, prefix, mask, thr;
  int64_t argmax;    // lowest index of the max of x (token 0 if the row has no finite entry)
  int level;         // radix level the next histogram serves
  int stage;         // 0: top-k select, 1: top-p select, 2: thresholds final
  int greedy;        // one-hot row: the token is argmax
  int skip;          // verify position past num_draft[b]: nothing to compute
};

// Per (logical row, split) partial results: MAX uses (v0, i0); RACE (v0, i0) = best p / E and its
// column, (v1, i1) the same for the residual, v2 the residual mass.
struct Partial {
  float v0, v1, v2;
  int64_t i0, i1;
};

constexpr int kStages = 2;  // top-k, top-p

struct Layout {
  int64_t rows_off, hist_off, part_off, tot_off, bytes;
  Layout(int64_t R, int64_t S) {
    auto up = [](int64_t x) { return (x + 255) / 256 * 256; };
    rows_off = 0;
    hist_off = up(R * static_cast<int64_t>(sizeof(SplitRow)));
    part_off = hist_off + up(R * kRadixBins * static_cast<int64_t>(sizeof(float)));
    tot_off = part_off + up(R * S * static_cast<int64_t>(sizeof(Partial)));
    bytes = tot_off + up(R * S * static_cast<int64_t>(sizeof(float)));
  }
};

// What every pass needs to find a logical row and its parameters.
struct Rows {
  const char* logits;
  int64_t s_b, s_p;      // element strides of the batch row and the position
  int dtype;
  int64_t P;             // positions per batch row (1 for sample, K+1 for verify)
  int64_t V, S, CH;      // vocabulary, splits, columns per split
  const float* temperature;
  const int64_t* top_k;
  const float* top_p;
  const float* min_p;
  const int64_t* num_draft;  // verify: positions past num_draft[b] are skipped; nullptr for sample
  int64_t K;
  SplitRow* rows;
  float* hist;
  Partial* part;
  float* tot;
};

__device__ __forceinline__ const void* row_ptr(const Rows& a, int64_t r) {
  const int64_t b = r / a.P, i = r % a.P;
  return a.logits + (b * a.s_b + i * a.s_p) * elem_size(a.dtype);
}

__device__ __forceinline__ bool past_draft(const Rows& a, int64_t r) {
  if (a.num_draft == nullptr) return false;
  const int64_t b = r / a.P, i = r % a.P;
  return i > min(max(a.num_draft[b], static_cast<int64_t>(0)), a.K);
}

__device__ __forceinline__ RowFilter filter_of(const SplitRow& st, float t, float min_p) {
  RowFilter f{};
  f.zmax = st.zmax;
  f.argmax = st.argmax;
  f.thr_key = st.thr;
  f.min_p = min_p;
  f.t = t;
  f.greedy = st.greedy != 0;
  return f;
}

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

// Sum of kept weights of logical row r from the TOTAL partials; every thread gets it.
__device__ __forceinline__ float row_total(const Rows& a, int64_t r, BlockShared& sh) {
  float tot = 0.f;
  for (int64_t j = threadIdx.x; j < a.S; j += kThreads) tot += a.tot[r * a.S + j];
  return block_sum(tot, sh);
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
  float best_p = -1.f, best_r = -1.f, rsum = 0.f;
  int64_t arg_p = 0, arg_r = 0;
  for (int64_t j = lo + threadIdx.x; j < hi; j += kThreads) {
    const float p = weight_dev(f, clean(load_dev(row, a.dtype, j)) / t) * inv_total;
    float res = 0.f;
    if (resid) {
      const float qj = qrow ? load_dev(qrow, q_dtype, j) : (j == x ? 1.f : 0.f);
      res = fmaxf(p - qj, 0.f);
      rsum += res;
    }
    if (p > 0.f || res > 0.f) {
      const float e = exp1(seed, static_cast<uint64_t>(r), static_cast<uint64_t>(j));
      if (p / e > best_p) {
        best_p = p / e;
        arg_p = j;
      }
      if (res > 0.f && res / e > best_r) {
        best_r = res / e;
        arg_r = j;
      }
    }
  }
  if (verify) rsum = block_sum(rsum, sh);
  block_argmax(best_p, arg_p, sh);
  if (verify) block_argmax(best_r, arg_r, sh);
  if (threadIdx.x == 0) a.part[blockIdx.x] = Partial{best_p, best_r, rsum, arg_p, arg_r};
}

// The race winner of logical row r over its splits (larger score first, then lower column) and,
// for verify, the residual's winner and mass. Every thread gets them.
__device__ __forceinline__ void merge_race(const Rows& a, int64_t r, bool verify, BlockShared& sh, int64_t& arg_p,
                                           int64_t& arg_r, float& rsum) {
  float best_p = -1.f, best_r = -1.f, rs = 0.f;
  arg_p = 0, arg_r = 0;
  for (int64_t s = threadIdx.x; s < a.S; s += kThreads) {
    const Partial p = a.part[r * a.S + s];
    if (p.v0 > best_p || (p.v0 == best_p && p.i0 < arg_p)) best_p = p.v0, arg_p = p.i0;
    if (p.v1 > best_r || (p.v1 == best_r && p.i1 < arg_r)) best_r = p.v1, arg_r = p.i1;
    rs += p.v2;
  }
  block_argmax(best_p, arg_p, sh);
  if (verify) {
    block_argmax(best_r, arg_r, sh);
    rsum = block_sum(rs, sh);
  }
}

__global__ void __launch_bounds__(kThreads) sample_final(Rows a, int64_t* out) {
  __shared__ BlockShared sh;
  const int64_t b = blockIdx.x;
  const SplitRow st = a.rows[b];
  if (st.greedy) {
    if (threadIdx.x == 0) out[b] = st.argmax;
    return;
  }
  int64_t arg_p, arg_r;
  float rsum;
  merge_race(a, b, false, sh, arg_p, arg_r, rsum);
  if (threadIdx.x == 0) out[b] = arg_p;
}

// Walk positions 0..n of batch row b as verify_kernel does: accept draft i with probability
// min(1, p(x) / q(x)); at the first rejection take the residual's winner (p's when the residual
// is empty); after n acceptances the bonus token.
__global__ void __launch_bounds__(kThreads) verify_final(Rows a, const int64_t* draft, int64_t d_s0,
                                                         const char* q_base, int64_t q_s0, int64_t q_s1, int q_dtype,
                                                         const int64_t* seed_ptr, int64_t* out_accepted,
                                                         int64_t* out_next) {
  __shared__ BlockShared sh;
  const int64_t b = blockIdx.x;
  const uint64_t seed = static_cast<uint64_t>(*seed_ptr);
  const int64_t n = min(max(a.num_draft[b], static_cast<int64_t>(0)), a.K);
  const float t = a.temperature[b];
  for (int64_t i = 0; i <= n; ++i) {
    const int64_t r = b * a.P + i;
    const SplitRow st = a.rows[r];
    const RowFilter f = filter_of(st, t, a.min_p[b]);
    const void* row = row_ptr(a, r);
    bool resid = false;
    if (i < n) {
      const int64_t x = draft[b * d_s0 + i];
      const bool in_range = x >= 0 && x < a.V;
      const float inv_total = f.greedy ? 0.f : 1.f / row_total(a, r, sh);
      float px = 0.f, qx = 1.f;
      if (in_range)
        px = f.greedy ? (x == f.argmax ? 1.f : 0.f) : weight_dev(f, clean(load_dev(row, a.dtype, x)) / t) * inv_total;
      const char* qrow = q_base ? q_base + (b * q_s0 + i * q_s1) * elem_size(q_dtype) : nullptr;
      if (qrow) qx = in_range ? load_dev(qrow, q_dtype, x) : 0.f;
      if (uniform01(seed, kStreamAccept, static_cast<uint64_t>(b), static_cast<uint64_t>(i)) * qx < px) continue;
      resid = true;
    }
    int64_t token = f.argmax;
    if (!f.greedy) {
      int64_t arg_p, arg_r;
      float rsum = 0.f;
      merge_race(a, r, true, sh, arg_p, arg_r, rsum);
      token = (resid && rsum > 0.f) ? arg_r : arg_p;
    }
    if (threadIdx.x == 0) {
      out_accepted[b] = i;
      out_next[b] = token;
    }
    return;
  }
}

Rows make_rows(const SplitArgs& g, std::uintptr_t workspace, int64_t R, int64_t S) {
  const Layout lay(R, S);
  char* ws = ptr<char>(workspace);
  Rows a;
  a.logits = ptr<const char>(g.logits);
  a.s_b = g.stride_b;
  a.s_p = g.stride_p;
  a.dtype = g.dtype;
  a.P = g.positions;
  a.V = g.vocab;
  a.S = S;
  a.CH = (g.vocab + S - 1) / S;
  a.temperature = ptr<const float>(g.temperature);
  a.top_k = ptr<const int64_t>(g.top_k);
  a.top_p = ptr<const float>(g.top_p);
  a.min_p = ptr<const float>(g.min_p);
  a.num_draft = g.num_draft ? ptr<const int64_t>(g.num_draft) : nullptr;
  a.K = g.positions - 1;
  a.rows = reinterpret_cast<SplitRow*>(ws + lay.rows_off);
  a.hist = reinterpret_cast<float*>(ws + lay.hist_off);
  a.part = reinterpret_cast<Partial*>(ws + lay.part_off);
  a.tot = reinterpret_cast<float*>(ws + lay.tot_off);
  return a;
}

}  // namespace

int64_t split_splits(int64_t vocab, int64_t splits) {
  const int64_t ch = (vocab + splits - 1) / splits;
  return (vocab + ch - 1) / ch;
}

int64_t split_workspace_bytes(int64_t rows, int64_t vocab, int64_t splits) {
  if (splits <= 1) return 0;
  return Layout(rows, split_splits(vocab, splits)).bytes;
}

void split_sample_or_verify(const char* where, const SplitArgs& g, const VerifyExtra* v, std::uintptr_t out,
                            std::uintptr_t workspace, int64_t workspace_bytes, int device, std::uintptr_t stream) {
  const int64_t R = g.batch * g.positions;
  const int64_t S = split_splits(g.vocab, g.splits);
  const Layout lay(R, S);
  check_workspace(where, workspace_bytes, lay.bytes);
  const Rows a = make_rows(g, workspace, R, S);
  {
    DeviceGuard guard(device, where);
    check_cuda(cudaMemsetAsync(a.hist, 0, R * kRadixBins * sizeof(float), reinterpret_cast<cudaStream_t>(stream)),
               where);
  }
  const unsigned grid = static_cast<unsigned>(R * S), rows = static_cast<unsigned>(R);
  launch(where, device, stream, grid, kThreads, 0, max_pass, a);
  launch(where, device, stream, rows, kThreads, 0, select_pass, a, true);
  const int64_t* seed = ptr<const int64_t>(g.seed);
  if (g.all_greedy) {  // greedy rows need only the argmax: straight to the final kernel
    if (v == nullptr) {
      launch(where, device, stream, static_cast<unsigned>(g.batch), kThreads, 0, sample_final, a, ptr<int64_t>(out));
    } else {
      launch(where, device, stream, static_cast<unsigned>(g.batch), kThreads, 0, verify_final, a,
             ptr<const int64_t>(v->draft), v->d_s0, v->q ? ptr<const char>(v->q) : nullptr, v->q_s0, v->q_s1,
             v->q_dtype, seed, ptr<int64_t>(v->out_accepted), ptr<int64_t>(out));
    }
    return;
  }
  for (int step = 0; step < 5; ++step) {  // top-k levels 1, 2 and top-p levels 0, 1, 2
    launch(where, device, stream, grid, kThreads, 0, hist_pass, a);
    launch(where, device, stream, rows, kThreads, 0, select_pass, a, false);
  }
  if (v == nullptr) {
    launch(where, device, stream, grid, kThreads, 0, race_pass, a, static_cast<const int64_t*>(nullptr),
           static_cast<int64_t>(0), static_cast<const char*>(nullptr), static_cast<int64_t>(0),
           static_cast<int64_t>(0), 0, seed);
    launch(where, device, stream, static_cast<unsigned>(g.batch), kThreads, 0, sample_final, a, ptr<int64_t>(out));
    return;
  }
  const int64_t* draft = ptr<const int64_t>(v->draft);
  const char* q = v->q ? ptr<const char>(v->q) : nullptr;
  launch(where, device, stream, grid, kThreads, 0, total_pass, a);
  launch(where, device, stream, grid, kThreads, 0, race_pass, a, draft, v->d_s0, q, v->q_s0, v->q_s1, v->q_dtype,
         seed);
  launch(where, device, stream, static_cast<unsigned>(g.batch), kThreads, 0, verify_final, a, draft, v->d_s0, q,
         v->q_s0, v->q_s1, v->q_dtype, seed, ptr<int64_t>(v->out_accepted), ptr<int64_t>(out));
}

}  // namespace sampling
}  // namespace fsgen
