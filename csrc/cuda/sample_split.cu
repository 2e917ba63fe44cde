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
#include "sample_split_rows.cuh"

namespace fsgen {
namespace sampling {
using namespace split;
namespace {

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
  const int64_t* seed = ptr<const int64_t>(g.seed);
  launch_argmax(where, a, R, device, stream);
  if (!g.all_greedy) {  // greedy rows need only the argmax: straight to the final kernel
    launch_thresholds(where, a, R, device, stream);
    launch_race(where, a, R, v, seed, device, stream);
  }
  const unsigned batch = static_cast<unsigned>(g.batch);
  if (v == nullptr) {
    launch(where, device, stream, batch, kThreads, 0, sample_final, a, ptr<int64_t>(out));
    return;
  }
  launch(where, device, stream, batch, kThreads, 0, verify_final, a, ptr<const int64_t>(v->draft), v->d_s0,
         v->q ? ptr<const char>(v->q) : nullptr, v->q_s0, v->q_s1, v->q_dtype, seed, ptr<int64_t>(v->out_accepted),
         ptr<int64_t>(out));
}

}  // namespace sampling
}  // namespace fsgen
