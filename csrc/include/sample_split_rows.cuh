// The split-row sample / verify pipeline's state in the workspace and what its kernels share
// (csrc/cuda/sample_split_passes.cu: the passes over the (logical row x split) grid;
// csrc/cuda/sample_split.cu: the final per-row kernels and the launch sequence). CUDA sources only.
#pragma once

#include <cstdint>

#include "sample_split.h"
#include "sampling_common.h"

namespace fsgen {
namespace sampling {
namespace split {

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

// Sum of kept weights of logical row r from the TOTAL partials; every thread gets it.
__device__ __forceinline__ float row_total(const Rows& a, int64_t r, BlockShared& sh) {
  float tot = 0.f;
  for (int64_t j = threadIdx.x; j < a.S; j += kThreads) tot += a.tot[r * a.S + j];
  return block_sum(tot, sh);
}

// Launch sequences of sample_split_passes.cu (all on `stream`, no host sync).
// MAX + SELECT: every logical row's argmax, greedy flag and the first radix level of a top-k.
void launch_argmax(const char* where, const Rows& a, int64_t R, int device, std::uintptr_t stream);
// 5 x (HIST + SELECT): the remaining radix levels of top-k (1, 2) and top-p (0, 1, 2).
void launch_thresholds(const char* where, const Rows& a, int64_t R, int device, std::uintptr_t stream);
// [TOTAL] + RACE: the kept mass (verify) and each split's race winners.
void launch_race(const char* where, const Rows& a, int64_t R, const VerifyExtra* v, const int64_t* seed, int device,
                 std::uintptr_t stream);

}  // namespace split
}  // namespace sampling
}  // namespace fsgen
