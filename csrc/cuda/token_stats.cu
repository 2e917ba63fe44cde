// ops.token_stats on CUDA, one pass over the vocabulary: one block per row at large batch; at small
// batch (splits > 1) each row is cut into S column splits whose states a second tiny kernel merges,
// so a batch of one is read by the whole GPU instead of one SM.
//
// Each thread walks groups of 4 consecutive elements (one 16-byte fp32 / 8-byte 16-bit load when the
// row start is 4-element aligned, else 4 scalar loads), keeping an online-softmax state: max m (=
// top-1 value), sum e = exp(x-m), sum e*(x-m), top-2 value, index of its first maximum, first NaN.
// States merge with warp shuffles, then across warps through shared memory. Same algorithm and
// special-row rules as csrc/cpu/token_stats.cpp and fsgen_engine/reference/token_stats.py.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "cuda_launch.h"
#include "fsgen.h"
#include "op_args.h"

namespace fsgen {
namespace {

constexpr int kThreads = 512;

struct State {
  float m, t2, s0, s1;
  int64_t idx, nan_idx;
};

__device__ __forceinline__ float load1(const void* p, int dtype, int64_t i) {
  if (dtype == kFloat32) return static_cast<const float*>(p)[i];
  const unsigned short raw = static_cast<const unsigned short*>(p)[i];
  if (dtype == kFloat16) return __half2float(__ushort_as_half(raw));
  return __uint_as_float(static_cast<unsigned int>(raw) << 16);
}

__device__ __forceinline__ void load4(const void* p, int dtype, int64_t i, bool vec, float out[4]) {
  if (vec) {
    if (dtype == kFloat32) {
      const float4 v = *reinterpret_cast<const float4*>(static_cast<const float*>(p) + i);
      out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
      return;
    }
    const uint2 v = *reinterpret_cast<const uint2*>(static_cast<const unsigned short*>(p) + i);
    const unsigned short h[4] = {static_cast<unsigned short>(v.x & 0xffffu), static_cast<unsigned short>(v.x >> 16),
                                 static_cast<unsigned short>(v.y & 0xffffu), static_cast<unsigned short>(v.y >> 16)};
#pragma unroll
    for (int k = 0; k < 4; ++k)
      out[k] = dtype == kFloat16 ? __half2float(__ushort_as_half(h[k])) : __uint_as_float(static_cast<unsigned int>(h[k]) << 16);
    return;
  }
#pragma unroll
  for (int k = 0; k < 4; ++k) out[k] = load1(p, dtype, i + k);
}

// Fold elements x[0..n) at indices base.. (increasing) into the state.
__device__ __forceinline__ void fold(State& st, const float* x, int n, int64_t base) {
  float xs[4];
  float cm = -INFINITY;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    if (k >= n) { xs[k] = -INFINITY; continue; }
    const bool nan = x[k] != x[k];
    if (nan && st.nan_idx < 0) st.nan_idx = base + k;
    xs[k] = nan ? -INFINITY : x[k];
    st.t2 = fmaxf(st.t2, fminf(fmaxf(st.m, cm), xs[k]));  // min(running top-1, x), with multiplicity
    if (xs[k] > fmaxf(st.m, cm)) st.idx = base + k;
    cm = fmaxf(cm, xs[k]);
  }
  const float new_m = fmaxf(st.m, cm);
  if (new_m == -INFINITY) return;
  if (new_m > st.m) {
    if (st.m != -INFINITY) {
      const float delta = st.m - new_m;
      const float scale = expf(delta);
      st.s1 = (st.s1 + delta * st.s0) * scale;
      st.s0 *= scale;
    }
    st.m = new_m;
  }
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    if (xs[k] == -INFINITY) continue;
    const float d = xs[k] - new_m;
    const float e = expf(d);
    st.s0 += e;
    st.s1 += e * d;
  }
}

__device__ __forceinline__ State merge(const State& a, const State& b) {
  State r;
  const bool a_first = a.m > b.m || (a.m == b.m && a.idx >= 0 && (b.idx < 0 || a.idx < b.idx));
  const State& w = a_first ? a : b;
  const State& l = a_first ? b : a;
  r.m = w.m;
  r.idx = w.idx;
  r.t2 = fmaxf(w.t2, l.m);
  r.t2 = fmaxf(r.t2, l.t2);
  r.nan_idx = a.nan_idx < 0 ? b.nan_idx : (b.nan_idx < 0 ? a.nan_idx : min(a.nan_idx, b.nan_idx));
  r.s0 = 0.f, r.s1 = 0.f;
  const float M = r.m;
  if (M != -INFINITY && M != INFINITY) {
    if (a.m != -INFINITY) {
      const float d = a.m - M, sc = expf(d);
      r.s0 += a.s0 * sc, r.s1 += (a.s1 + d * a.s0) * sc;
    }
    if (b.m != -INFINITY) {
      const float d = b.m - M, sc = expf(d);
      r.s0 += b.s0 * sc, r.s1 += (b.s1 + d * b.s0) * sc;
    }
  }
  return r;
}

__device__ __forceinline__ State shfl_down(const State& s, int off) {
  State r;
  r.m = __shfl_down_sync(0xffffffffu, s.m, off);
  r.t2 = __shfl_down_sync(0xffffffffu, s.t2, off);
  r.s0 = __shfl_down_sync(0xffffffffu, s.s0, off);
  r.s1 = __shfl_down_sync(0xffffffffu, s.s1, off);
  r.idx = __shfl_down_sync(0xffffffffu, s.idx, off);
  r.nan_idx = __shfl_down_sync(0xffffffffu, s.nan_idx, off);
  return r;
}

constexpr State kEmpty{-INFINITY, -INFINITY, 0.f, 0.f, -1, -1};

// Block-wide merge of every thread's state; the result is valid in thread 0.
template <int kBlock>
__device__ __forceinline__ State block_merge(State st) {
  // idx < 0 means "no element above -inf seen"; merge treats it as the largest index
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) st = merge(st, shfl_down(st, off));
  __shared__ State warp_states[kBlock / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_states[warp] = st;
  __syncthreads();
  if (warp == 0) {
    st = lane < kBlock / 32 ? warp_states[lane] : kEmpty;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) st = merge(st, shfl_down(st, off));
  }
  return st;
}

// Fold columns [lo, hi) of one row (lo a multiple of 4) into this thread's state, groups of 4
// strided over the block; the last ragged group (hi - lo not a multiple of 4) goes to thread 0, last,
// so each thread still sees increasing indices.
template <int kBlock>
__device__ __forceinline__ State fold_range(const char* p, int dtype, bool vec, int64_t lo, int64_t hi) {
  State st = kEmpty;
  float x[4];
  const int64_t g_end = lo / 4 + (hi - lo) / 4;
  for (int64_t g = lo / 4 + threadIdx.x; g < g_end; g += kBlock) {
    load4(p, dtype, g * 4, vec, x);
    fold(st, x, 4, g * 4);
  }
  const int64_t tail = hi - g_end * 4;
  if (threadIdx.x == 0 && tail > 0) {
    for (int k = 0; k < tail; ++k) x[k] = load1(p, dtype, g_end * 4 + k);
    fold(st, x, static_cast<int>(tail), g_end * 4);
  }
  return st;
}

__device__ __forceinline__ void write_stats(const State& st, int64_t B, int64_t row, float* out, int64_t* argmax) {
  const float nan = __int_as_float(0x7fc00000);
  float ent = nan, mp = nan, mg = nan, lse;
  int64_t am;
  if (st.nan_idx >= 0) {
    lse = nan, am = st.nan_idx;
  } else if (st.m == INFINITY || st.m == -INFINITY) {
    lse = st.m, am = st.m == INFINITY ? st.idx : 0;
  } else {
    const float log_s0 = logf(st.s0);
    lse = st.m + log_s0;
    mp = 1.f / st.s0;
    ent = fmaxf(log_s0 - st.s1 / st.s0, 0.f);
    mg = (1.f - expf(st.t2 - st.m)) / st.s0;  // t2 == -inf -> margin == max_prob
    am = st.idx;
  }
  out[row] = ent, out[B + row] = mp, out[2 * B + row] = mg, out[3 * B + row] = lse;
  argmax[row] = am;
}

__device__ __forceinline__ const char* row_ptr(const void* logits, int dtype, int64_t row, int64_t row_stride,
                                               bool& vec) {
  const int64_t esize = dtype == kFloat32 ? 4 : 2;
  const char* p = static_cast<const char*>(logits) + row * row_stride * esize;
  vec = (reinterpret_cast<uintptr_t>(p) % (4 * esize)) == 0;
  return p;
}

// Large batches: one block per row, one pass, stats written directly.
__global__ void __launch_bounds__(kThreads) token_stats_kernel(const void* logits, int64_t B, int64_t V,
                                                               int64_t row_stride, int dtype, float* out,
                                                               int64_t* argmax) {
  const int64_t row = blockIdx.x;
  bool vec;
  const char* p = row_ptr(logits, dtype, row, row_stride, vec);
  const State st = block_merge<kThreads>(fold_range<kThreads>(p, dtype, vec, 0, V));
  if (threadIdx.x == 0) write_stats(st, B, row, out, argmax);
}

// Small batches (split rows): block (row, s) of a B x S grid folds columns [s*CH, (s+1)*CH) into
// one state in ws[row * S + s]; token_stats_merge_kernel then merges a row's S states in column
// order. CH is a multiple of 4, so every split keeps the row's vector alignment.
constexpr int kSplitThreads = 256;

__global__ void __launch_bounds__(kSplitThreads) token_stats_split_kernel(const void* logits, int64_t V,
                                                                          int64_t row_stride, int dtype, int64_t S,
                                                                          int64_t CH, State* ws) {
  const int64_t row = blockIdx.x / S, s = blockIdx.x % S;
  bool vec;
  const char* p = row_ptr(logits, dtype, row, row_stride, vec);
  const int64_t lo = s * CH, hi = min(lo + CH, V);
  const State st = block_merge<kSplitThreads>(fold_range<kSplitThreads>(p, dtype, vec, lo, hi));
  if (threadIdx.x == 0) ws[blockIdx.x] = st;
}

// One warp per row: lane j merges splits j, j+32, ... then the warp merges the lanes.
__global__ void __launch_bounds__(32) token_stats_merge_kernel(const State* ws, int64_t B, int64_t S, float* out,
                                                               int64_t* argmax) {
  const int64_t row = blockIdx.x;
  State st = kEmpty;
  for (int64_t s = threadIdx.x; s < S; s += 32) st = merge(st, ws[row * S + s]);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) st = merge(st, shfl_down(st, off));
  if (threadIdx.x == 0) write_stats(st, B, row, out, argmax);
}

void token_stats_cuda(std::uintptr_t logits, int64_t B, int64_t V, int64_t row_stride, int dtype,
                      std::uintptr_t out_f32, std::uintptr_t out_argmax, int64_t splits, std::uintptr_t workspace,
                      int64_t workspace_bytes, int device, std::uintptr_t stream) {
  if (splits > 1) {
    const auto [ch, S] = column_splits(V, splits);
    check_workspace("token_stats_cuda", workspace_bytes, B * S * static_cast<int64_t>(sizeof(State)));
    launch("token_stats_cuda", device, stream, static_cast<unsigned int>(B * S), kSplitThreads, 0,
           token_stats_split_kernel, ptr<const void>(logits), V, row_stride, dtype, S, ch, ptr<State>(workspace));
    launch("token_stats_cuda", device, stream, static_cast<unsigned int>(B), 32, 0, token_stats_merge_kernel,
           ptr<const State>(workspace), B, S, ptr<float>(out_f32), ptr<int64_t>(out_argmax));
    return;
  }
  launch("token_stats_cuda", device, stream, static_cast<unsigned int>(B), kThreads, 0, token_stats_kernel,
         ptr<const void>(logits), B, V, row_stride, dtype, ptr<float>(out_f32), ptr<int64_t>(out_argmax));
}

// Bytes of workspace token_stats_cuda needs for `splits` splits of `batch` rows (0 for one split).
int64_t token_stats_cuda_workspace(int64_t B, int64_t V, int64_t splits) {
  if (splits <= 1) return 0;
  return B * column_splits(V, splits).count * static_cast<int64_t>(sizeof(State));
}

FSGEN_DEF(token_stats_cuda, "ops.token_stats on CUDA (see op_args.h for the arguments)", FSGEN_TOKEN_STATS_ARGS,
          FSGEN_CUDA_SPLIT_ARGS, FSGEN_CUDA_ARGS);
FSGEN_DEF(token_stats_cuda_workspace, "workspace bytes of token_stats_cuda", FSGEN_WORKSPACE_ARGS);

}  // namespace
}  // namespace fsgen
