// ops.fuse_logits on CUDA: one block per row at large batch, S blocks per row at small batch (the
// split maxima go through a [B, S] workspace). Pass 1 (only with a mask): block max of large[:V']
// (NaN ignored) via warp shuffles + shared memory. Pass 2: groups of 4 elements per thread, each input
// loaded with one vector load when its row start is 4-element aligned (inputs may differ in dtype
// and alignment), out = w_l*large + w_s*small + w_f*small_ft, -inf where large < max + log(alpha).
// Zero weights drop their input. Mirrors csrc/cpu/fuse_logits.cpp / reference/fuse_logits.py.
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

__device__ __forceinline__ float cvt16(unsigned short h, int dtype) {
  return dtype == kFloat16 ? __half2float(__ushort_as_half(h)) : __uint_as_float(static_cast<unsigned int>(h) << 16);
}

__device__ __forceinline__ float load1(const void* p, int dtype, int64_t i) {
  if (dtype == kFloat32) return static_cast<const float*>(p)[i];
  return cvt16(static_cast<const unsigned short*>(p)[i], dtype);
}

__device__ __forceinline__ void load4(const void* p, int dtype, int64_t i, bool vec, float out[4]) {
  if (vec) {
    if (dtype == kFloat32) {
      const float4 v = *reinterpret_cast<const float4*>(static_cast<const float*>(p) + i);
      out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
    } else {
      const uint2 v = *reinterpret_cast<const uint2*>(static_cast<const unsigned short*>(p) + i);
      out[0] = cvt16(static_cast<unsigned short>(v.x & 0xffffu), dtype);
      out[1] = cvt16(static_cast<unsigned short>(v.x >> 16), dtype);
      out[2] = cvt16(static_cast<unsigned short>(v.y & 0xffffu), dtype);
      out[3] = cvt16(static_cast<unsigned short>(v.y >> 16), dtype);
    }
    return;
  }
#pragma unroll
  for (int k = 0; k < 4; ++k) out[k] = load1(p, dtype, i + k);
}

__device__ __forceinline__ bool aligned4(const void* p, int dtype) {
  return reinterpret_cast<uintptr_t>(p) % (dtype == kFloat32 ? 16 : 8) == 0;
}

__device__ __forceinline__ float nomax(float a, float x) { return x > a ? x : a; }  // NaN never wins

// This thread's max of large[lo, hi) (lo a multiple of 4), groups of 4 strided over the block.
template <int kBlock>
__device__ __forceinline__ float range_max(const void* l, int ld, bool lv, int64_t lo, int64_t hi) {
  float m = -INFINITY, x[4];
  const int64_t g_end = lo / 4 + (hi - lo) / 4;
  for (int64_t g = lo / 4 + threadIdx.x; g < g_end; g += kBlock) {
    load4(l, ld, g * 4, lv, x);
#pragma unroll
    for (int k = 0; k < 4; ++k) m = nomax(m, x[k]);
  }
  for (int64_t i = g_end * 4 + threadIdx.x; i < hi; i += kBlock) m = nomax(m, load1(l, ld, i));
  return m;
}

// Max over the block (NaN never wins); every thread gets it.
template <int kBlock>
__device__ __forceinline__ float block_max(float m) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) m = nomax(m, __shfl_xor_sync(0xffffffffu, m, off));
  __shared__ float warp_max[kBlock / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_max[warp] = m;
  __syncthreads();
  m = -INFINITY;
#pragma unroll
  for (int w = 0; w < kBlock / 32; ++w) m = nomax(m, warp_max[w]);
  return m;
}

struct Rows {  // one row of each input and of the output
  const void *l, *s, *f;
  int ld, sd, fd;
  float* o;
  bool lv, sv, fv, ov;  // 4-element aligned row starts: vector loads / stores
};

__device__ __forceinline__ Rows rows_of(int64_t row, const void* large, int64_t ls, int ld, const void* small,
                                        int64_t ss, int sd, const void* ft, int64_t fs, int fd, int64_t V,
                                        float* out) {
  Rows r;
  r.l = static_cast<const char*>(large) + row * ls * (ld == kFloat32 ? 4 : 2);
  r.s = static_cast<const char*>(small) + row * ss * (sd == kFloat32 ? 4 : 2);
  r.f = ft == nullptr ? nullptr : static_cast<const char*>(ft) + row * fs * (fd == kFloat32 ? 4 : 2);
  r.ld = ld, r.sd = sd, r.fd = fd;
  r.o = out + row * V;
  r.lv = aligned4(r.l, ld), r.sv = aligned4(r.s, sd), r.fv = r.f != nullptr && aligned4(r.f, fd);
  r.ov = reinterpret_cast<uintptr_t>(r.o) % 16 == 0;
  return r;
}

// out[lo, hi) = w_l*large + w_s*small + w_f*small_ft, -inf where large < thr (with use_mask).
template <int kBlock>
__device__ __forceinline__ void fuse_range(const Rows& r, int64_t lo, int64_t hi, float wl, float ws, float wf,
                                           bool use_mask, float thr) {
  const bool use_l = wl != 0.f, use_s = ws != 0.f, use_f = r.f != nullptr && wf != 0.f;
  float a[4], b[4], c[4], o[4];
  const int64_t g_end = lo / 4 + (hi - lo) / 4;
  for (int64_t g = lo / 4 + threadIdx.x; g < g_end; g += kBlock) {
    const int64_t i = g * 4;
    load4(r.l, r.ld, i, r.lv, a);
    if (use_s) load4(r.s, r.sd, i, r.sv, b);
    if (use_f) load4(r.f, r.fd, i, r.fv, c);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      float acc = use_l ? wl * a[k] : 0.f;
      if (use_s) acc += ws * b[k];
      if (use_f) acc += wf * c[k];
      o[k] = (use_mask && a[k] < thr) ? -INFINITY : acc;
    }
    if (r.ov) {
      *reinterpret_cast<float4*>(r.o + i) = make_float4(o[0], o[1], o[2], o[3]);
    } else {
#pragma unroll
      for (int k = 0; k < 4; ++k) r.o[i + k] = o[k];
    }
  }
  for (int64_t i = g_end * 4 + threadIdx.x; i < hi; i += kBlock) {
    const float x = load1(r.l, r.ld, i);
    float acc = use_l ? wl * x : 0.f;
    if (use_s) acc += ws * load1(r.s, r.sd, i);
    if (use_f) acc += wf * load1(r.f, r.fd, i);
    r.o[i] = (use_mask && x < thr) ? -INFINITY : acc;
  }
}

#define FUSE_PARAMS                                                                                       \
  const void *large, int64_t ls, int ld, const void *small, int64_t ss, int sd, const void *ft, int64_t fs, \
      int fd, int64_t V
#define FUSE_ROWS(row) rows_of(row, large, ls, ld, small, ss, sd, ft, fs, fd, V, out)

// Large batches: one block per row (pass 1: the row max, only with a mask; pass 2: fuse).
__global__ void __launch_bounds__(kThreads) fuse_logits_kernel(FUSE_PARAMS, float wl, float ws, float wf,
                                                               float log_alpha, bool use_mask, float* out) {
  const Rows r = FUSE_ROWS(blockIdx.x);
  const float thr = use_mask ? block_max<kThreads>(range_max<kThreads>(r.l, ld, r.lv, 0, V)) + log_alpha : -INFINITY;
  fuse_range<kThreads>(r, 0, V, wl, ws, wf, use_mask, thr);
}

// Small batches: a B x S grid, block (row, s) owns columns [s*CH, (s+1)*CH) (CH a multiple of 4).
// With a mask, fuse_split_max_kernel first writes each split's max of large to ws[row * S + s] and
// every fusing block takes the max of its row's S values.
constexpr int kSplitThreads = 256;

__global__ void __launch_bounds__(kSplitThreads) fuse_split_max_kernel(const void* large, int64_t ls, int ld,
                                                                       int64_t V, int64_t S, int64_t CH, float* wsp) {
  const int64_t row = blockIdx.x / S, s = blockIdx.x % S;
  const void* l = static_cast<const char*>(large) + row * ls * (ld == kFloat32 ? 4 : 2);
  const int64_t lo = s * CH, hi = min(lo + CH, V);
  const float m = block_max<kSplitThreads>(range_max<kSplitThreads>(l, ld, aligned4(l, ld), lo, hi));
  if (threadIdx.x == 0) wsp[blockIdx.x] = m;
}

__global__ void __launch_bounds__(kSplitThreads) fuse_split_kernel(FUSE_PARAMS, float wl, float ws, float wf,
                                                                   float log_alpha, bool use_mask, int64_t S,
                                                                   int64_t CH, const float* wsp, float* out) {
  const int64_t row = blockIdx.x / S, s = blockIdx.x % S;
  const Rows r = FUSE_ROWS(row);
  float thr = -INFINITY;
  if (use_mask) {
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < S; j += kSplitThreads) m = nomax(m, wsp[row * S + j]);
    thr = block_max<kSplitThreads>(m) + log_alpha;
  }
  const int64_t lo = s * CH;
  fuse_range<kSplitThreads>(r, lo, min(lo + CH, V), wl, ws, wf, use_mask, thr);
}

void fuse_logits_cuda(std::uintptr_t large, int64_t large_stride, int large_dtype, std::uintptr_t small,
                      int64_t small_stride, int small_dtype, std::uintptr_t small_ft, int64_t ft_stride, int ft_dtype,
                      int64_t B, int64_t V, double w_l, double w_s, double w_f, double log_alpha, std::uintptr_t out,
                      int64_t splits, std::uintptr_t workspace, int64_t workspace_bytes, int device,
                      std::uintptr_t stream) {
  const bool use_mask = !std::isinf(log_alpha);
  const float la = use_mask ? static_cast<float>(log_alpha) : 0.f;
  const void* ft = small_ft ? ptr<const void>(small_ft) : nullptr;
  if (splits > 1) {
    const auto [ch, S] = column_splits(V, splits);
    check_workspace("fuse_logits_cuda", workspace_bytes, B * S * static_cast<int64_t>(sizeof(float)));
    const unsigned grid = static_cast<unsigned>(B * S);
    if (use_mask)
      launch("fuse_logits_cuda", device, stream, grid, kSplitThreads, 0, fuse_split_max_kernel, ptr<const void>(large),
             large_stride, large_dtype, V, S, ch, ptr<float>(workspace));
    launch("fuse_logits_cuda", device, stream, grid, kSplitThreads, 0, fuse_split_kernel, ptr<const void>(large),
           large_stride, large_dtype, ptr<const void>(small), small_stride, small_dtype, ft, ft_stride, ft_dtype, V,
           static_cast<float>(w_l), static_cast<float>(w_s), static_cast<float>(w_f), la, use_mask, S, ch,
           ptr<const float>(workspace), ptr<float>(out));
    return;
  }
  launch("fuse_logits_cuda", device, stream, static_cast<unsigned int>(B), kThreads, 0, fuse_logits_kernel,
         ptr<const void>(large), large_stride, large_dtype, ptr<const void>(small), small_stride, small_dtype, ft,
         ft_stride, ft_dtype, V, static_cast<float>(w_l), static_cast<float>(w_s), static_cast<float>(w_f), la,
         use_mask, ptr<float>(out));
}

int64_t fuse_logits_cuda_workspace(int64_t B, int64_t V, int64_t splits) {
  if (splits <= 1) return 0;
  return B * column_splits(V, splits).count * static_cast<int64_t>(sizeof(float));
}

FSGEN_DEF(fuse_logits_cuda, "ops.fuse_logits on CUDA (see op_args.h for the arguments)", FSGEN_FUSE_LOGITS_ARGS,
          FSGEN_CUDA_SPLIT_ARGS, FSGEN_CUDA_ARGS);
FSGEN_DEF(fuse_logits_cuda_workspace, "workspace bytes of fuse_logits_cuda", FSGEN_WORKSPACE_ARGS);

}  // namespace
}  // namespace fsgen
