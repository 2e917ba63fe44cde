// ops.fuse_logits on CUDA: one block per row. Pass 1 (only with a mask): block max of large[:V']
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

__global__ void __launch_bounds__(kThreads) fuse_logits_kernel(
    const void* large, int64_t ls, int ld, const void* small, int64_t ss, int sd, const void* ft, int64_t fs, int fd,
    int64_t V, float wl, float ws, float wf, float log_alpha, bool use_mask, float* out) {
  const int64_t row = blockIdx.x;
  const void* l = static_cast<const char*>(large) + row * ls * (ld == kFloat32 ? 4 : 2);
  const void* s = static_cast<const char*>(small) + row * ss * (sd == kFloat32 ? 4 : 2);
  const void* f = ft == nullptr ? nullptr : static_cast<const char*>(ft) + row * fs * (fd == kFloat32 ? 4 : 2);
  float* o = out + row * V;
  const bool lv = aligned4(l, ld), sv = aligned4(s, sd), fv = f != nullptr && aligned4(f, fd);
  const bool ov = reinterpret_cast<uintptr_t>(o) % 16 == 0;
  const int64_t nvec = V / 4;
  float thr = -INFINITY;
  if (use_mask) {
    float m = -INFINITY, x[4];
    for (int64_t g = threadIdx.x; g < nvec; g += kThreads) {
      load4(l, ld, g * 4, lv, x);
#pragma unroll
      for (int k = 0; k < 4; ++k) m = nomax(m, x[k]);
    }
    for (int64_t i = nvec * 4 + threadIdx.x; i < V; i += kThreads) m = nomax(m, load1(l, ld, i));
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) m = nomax(m, __shfl_xor_sync(0xffffffffu, m, off));
    __shared__ float warp_max[kThreads / 32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) warp_max[warp] = m;
    __syncthreads();
    m = -INFINITY;
#pragma unroll
    for (int w = 0; w < kThreads / 32; ++w) m = nomax(m, warp_max[w]);
    thr = m + log_alpha;
  }
  const bool use_l = wl != 0.f, use_s = ws != 0.f, use_f = f != nullptr && wf != 0.f;
  float a[4], b[4], c[4], r[4];
  for (int64_t g = threadIdx.x; g < nvec; g += kThreads) {
    const int64_t i = g * 4;
    load4(l, ld, i, lv, a);
    if (use_s) load4(s, sd, i, sv, b);
    if (use_f) load4(f, fd, i, fv, c);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      float acc = use_l ? wl * a[k] : 0.f;
      if (use_s) acc += ws * b[k];
      if (use_f) acc += wf * c[k];
      r[k] = (use_mask && a[k] < thr) ? -INFINITY : acc;
    }
    if (ov) {
      *reinterpret_cast<float4*>(o + i) = make_float4(r[0], r[1], r[2], r[3]);
    } else {
#pragma unroll
      for (int k = 0; k < 4; ++k) o[i + k] = r[k];
    }
  }
  for (int64_t i = nvec * 4 + threadIdx.x; i < V; i += kThreads) {
    const float x = load1(l, ld, i);
    float acc = use_l ? wl * x : 0.f;
    if (use_s) acc += ws * load1(s, sd, i);
    if (use_f) acc += wf * load1(f, fd, i);
    o[i] = (use_mask && x < thr) ? -INFINITY : acc;
  }
}

void fuse_logits_cuda(std::uintptr_t large, int64_t large_stride, int large_dtype, std::uintptr_t small,
                      int64_t small_stride, int small_dtype, std::uintptr_t small_ft, int64_t ft_stride, int ft_dtype,
                      int64_t B, int64_t V, double w_l, double w_s, double w_f, double log_alpha, std::uintptr_t out,
                      int device, std::uintptr_t stream) {
  const bool use_mask = !std::isinf(log_alpha);
  launch("fuse_logits_cuda", device, stream, static_cast<unsigned int>(B), kThreads, 0, fuse_logits_kernel,
         ptr<const void>(large), large_stride, large_dtype, ptr<const void>(small), small_stride, small_dtype,
         small_ft ? ptr<const void>(small_ft) : nullptr, ft_stride, ft_dtype, V, static_cast<float>(w_l),
         static_cast<float>(w_s), static_cast<float>(w_f), use_mask ? static_cast<float>(log_alpha) : 0.f, use_mask,
         ptr<float>(out));
}

FSGEN_DEF(fuse_logits_cuda, "ops.fuse_logits on CUDA (see op_args.h for the arguments)", FSGEN_FUSE_LOGITS_ARGS,
          FSGEN_CUDA_ARGS);

}  // namespace
}  // namespace fsgen
