// SIMT emulator: runs the project's CUDA kernels (csrc/cuda/*.cu, compiled as host C++) on CPU memory,
// so tests exercise the kernels' logic without a GPU. Used only by the test module fsgen_engine-free
// extension `_C_simt` (CMake option FSGEN_SIMT, tests/_simt.py); never by the package's own build.
//
// What it models:
//   * grid / block / warp structure: threadIdx, blockIdx, blockDim, gridDim, warpSize, lanes;
//   * every thread of a block is a fiber (ucontext) on ONE OS thread; blocks run one after another in
//     grid order (x fastest, then y, z), threads of a block in round-robin between barriers. Execution
//     is deterministic and free of data races;
//   * barriers: __syncthreads() (and _count/_and/_or) waits for all live threads of the block;
//     __syncwarp(mask), shuffles, ballot/any/all wait for the live lanes named in the mask. A thread
//     that returned counts as arrived at every later barrier (modern CUDA). A barrier that can never be
//     released (divergent __syncthreads, mismatched warp masks) raises fsgen::simt::Error (a Python
//     RuntimeError) naming the launch, the block and where the threads wait: it never hangs;
//   * atomics (plain read-modify-write: fibers never interleave inside one call), warp intrinsics,
//     vector types, __half / __nv_bfloat16 with IEEE round-to-nearest-even conversions, the runtime
//     API calls the project uses (cudaDeviceGetAttribute with a settable SM count, default 132).
// What it does NOT model: the memory model (races, missing fences or volatile cannot show up, since
// a thread runs alone until its next barrier), timing, occupancy, bank conflicts, __shared__ garbage
// (shared memory is a `static` and keeps the previous block's values), dynamic `extern __shared__`
// (a compile error), spin-waits on other blocks (blocks run sequentially; a spin on another thread of
// the same block only progresses through atomicCAS failures / __nanosleep, which yield), and the
// exact float results of the GPU's fast-math intrinsics (__expf is expf here).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- CUDA language keywords --------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
// __noinline__ is left alone: glibc spells __attribute__((__noinline__)) with it
#define __launch_bounds__(...)
#define __constant__
// Blocks run one at a time, so one static instance per declaration is the block's shared memory. It is
// not re-initialised between blocks (on a GPU it starts as garbage anyway). `extern __shared__ T x[];`
// (dynamic shared memory) becomes `extern static`, a compile error: unsupported, and loudly so.
#define __shared__ static
#define __managed__

struct uint3 {
  unsigned int x, y, z;
};
struct dim3 {
  unsigned int x = 1, y = 1, z = 1;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

// The scheduler sets these before it switches into a fiber (a thread only reads them between its own
// barriers, so one global copy is enough).
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
constexpr int warpSize = 32;

namespace fsgen {
namespace simt {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Kinds of warp-level operations; the scheduler computes their results when it releases the lanes.
enum WarpOp : int { kWarpSync = 0, kWarpShfl, kWarpBallot, kWarpReduceAdd, kWarpReduceMin, kWarpReduceMax, kWarpMatchAny, kWarpAny, kWarpAll };

// Warp barrier of the calling lane: `value` / `src_lane` (shuffles), `pred` (ballot); returns the
// operation's 64-bit result for this lane. Throws for a mask without the calling lane.
uint64_t warp_op(const char* what, unsigned mask, int op, uint64_t value, int src_lane, bool pred);
// Block barrier; returns the number of live threads whose `pred` was true (for __syncthreads_count).
int block_sync(bool pred);
// Let the other threads of the block run (failed atomicCAS, __nanosleep): spin-waits on another
// thread of the block then make progress; a livelock is reported after many yields without progress.
void yield();
int lane_id();
unsigned live_lanes();  // mask of the calling warp's lanes that have not returned
long long clock_ticks();

// Runs fn(ctx) once per thread of each block; throws Error for bad launch configurations, deadlocks
// and exceptions thrown by the kernel.
void run_grid(const char* where, dim3 grid, dim3 block, size_t smem, void (*fn)(void*), void* ctx);

// Launch kernel(args...) on grid x block: the stand-in for kernel<<<grid, block, smem, stream>>>(args...)
// (csrc/include/cuda_launch.h). Each thread gets its own copy of the arguments, as on a GPU.
template <typename... Params, typename... Args>
void launch(const char* where, dim3 grid, dim3 block, size_t smem, void (*kernel)(Params...), Args&&... args) {
  std::tuple<std::decay_t<Params>...> params(static_cast<Params>(std::forward<Args>(args))...);
  struct Ctx {
    void (*kernel)(Params...);
    std::tuple<std::decay_t<Params>...>* params;
  } ctx{kernel, &params};
  run_grid(where, grid, block, smem,
           [](void* p) {
             auto* c = static_cast<Ctx*>(p);
             std::apply(c->kernel, *c->params);  // copies each parameter into the thread's frame
           },
           &ctx);
}

// SM count reported by cudaDeviceGetAttribute(cudaDevAttrMultiProcessorCount) (default 132: H100/H200).
void set_sm_count(int n);
int sm_count();

template <typename T>
inline uint64_t to_bits(const T& v) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8, "warp shuffles move values of at most 8 bytes");
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof(T));
  return u;
}
template <typename T>
inline T from_bits(uint64_t u) {
  T v;
  std::memcpy(&v, &u, sizeof(T));
  return v;
}
inline void check_width(int width, const char* what) {
  if (width <= 0 || width > 32 || (width & (width - 1)) != 0)
    throw Error(std::string(what) + ": width must be a power of 2 in [1, 32], got " + std::to_string(width));
}

}  // namespace simt
}  // namespace fsgen

// ---- warp intrinsics ---------------------------------------------------------------------------------
// A source lane outside the mask (or already returned) yields the caller's own value (undefined on a GPU).
template <typename T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize) {
  fsgen::simt::check_width(width, "__shfl_sync");
  const int lane = fsgen::simt::lane_id();
  const int src = (lane / width) * width + (src_lane & (width - 1));
  return fsgen::simt::from_bits<T>(fsgen::simt::warp_op("__shfl_sync", mask, fsgen::simt::kWarpShfl,
                                                        fsgen::simt::to_bits(var), src, false));
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  fsgen::simt::check_width(width, "__shfl_up_sync");
  const int lane = fsgen::simt::lane_id();
  const int src = (lane % width) >= static_cast<int>(delta) ? lane - static_cast<int>(delta) : lane;
  return fsgen::simt::from_bits<T>(fsgen::simt::warp_op("__shfl_up_sync", mask, fsgen::simt::kWarpShfl,
                                                        fsgen::simt::to_bits(var), src, false));
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  fsgen::simt::check_width(width, "__shfl_down_sync");
  const int lane = fsgen::simt::lane_id();
  const int src = (lane % width) + static_cast<int>(delta) < width ? lane + static_cast<int>(delta) : lane;
  return fsgen::simt::from_bits<T>(fsgen::simt::warp_op("__shfl_down_sync", mask, fsgen::simt::kWarpShfl,
                                                        fsgen::simt::to_bits(var), src, false));
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize) {
  fsgen::simt::check_width(width, "__shfl_xor_sync");
  const int lane = fsgen::simt::lane_id();
  int src = lane ^ lane_mask;
  // CUDA: lanes may read earlier groups of `width` lanes but not later ones (then: own value)
  if (src < 0 || src >= 32 || src >= (lane / width + 1) * width) src = lane;
  return fsgen::simt::from_bits<T>(fsgen::simt::warp_op("__shfl_xor_sync", mask, fsgen::simt::kWarpShfl,
                                                        fsgen::simt::to_bits(var), src, false));
}
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  fsgen::simt::warp_op("__syncwarp", mask, fsgen::simt::kWarpSync, 0, -1, false);
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  return static_cast<unsigned>(fsgen::simt::warp_op("__ballot_sync", mask, fsgen::simt::kWarpBallot, 0, -1, pred != 0));
}
// (computed at the release of the group: a lane that returns right after the vote must still count)
inline int __any_sync(unsigned mask, int pred) {
  return static_cast<int>(fsgen::simt::warp_op("__any_sync", mask, fsgen::simt::kWarpAny, 0, -1, pred != 0));
}
inline int __all_sync(unsigned mask, int pred) {
  return static_cast<int>(fsgen::simt::warp_op("__all_sync", mask, fsgen::simt::kWarpAll, 0, -1, pred != 0));
}
// The lanes that have not returned (the emulator cannot see divergence inside a warp: convergent code).
inline unsigned __activemask() { return fsgen::simt::live_lanes(); }
inline unsigned __reduce_add_sync(unsigned mask, unsigned v) {
  return static_cast<unsigned>(fsgen::simt::warp_op("__reduce_add_sync", mask, fsgen::simt::kWarpReduceAdd, v, -1, false));
}
inline unsigned __reduce_min_sync(unsigned mask, unsigned v) {
  return static_cast<unsigned>(fsgen::simt::warp_op("__reduce_min_sync", mask, fsgen::simt::kWarpReduceMin, v, -1, false));
}
inline unsigned __reduce_max_sync(unsigned mask, unsigned v) {
  return static_cast<unsigned>(fsgen::simt::warp_op("__reduce_max_sync", mask, fsgen::simt::kWarpReduceMax, v, -1, false));
}
template <typename T>
inline unsigned __match_any_sync(unsigned mask, T v) {
  return static_cast<unsigned>(fsgen::simt::warp_op("__match_any_sync", mask, fsgen::simt::kWarpMatchAny,
                                                    fsgen::simt::to_bits(v), -1, false));
}

// ---- block barriers ----------------------------------------------------------------------------------
inline void __syncthreads() { fsgen::simt::block_sync(false); }
inline int __syncthreads_count(int pred) { return fsgen::simt::block_sync(pred != 0); }
inline int __syncthreads_and(int pred) {
  // all live threads voted yes <=> nobody voted no
  return fsgen::simt::block_sync(pred == 0) == 0;
}
inline int __syncthreads_or(int pred) { return fsgen::simt::block_sync(pred != 0) != 0; }
// One thread runs alone until its next barrier: every write is visible to the threads that run after
// it, so the fences have nothing to order.
inline void __threadfence() {}
inline void __threadfence_block() {}
inline void __threadfence_system() {}
inline void __nanosleep(unsigned) { fsgen::simt::yield(); }
inline long long clock64() { return fsgen::simt::clock_ticks(); }
[[noreturn]] inline void __trap() { throw fsgen::simt::Error("__trap() called by the kernel"); }

// ---- atomics: the overloads CUDA has (so code that compiles here compiles with nvcc) --------------------
#define FSGEN_SIMT_RMW(name, T, expr) \
  inline T name(T* address, T val) {  \
    const T old = *address;           \
    *address = (expr);                \
    return old;                       \
  }
FSGEN_SIMT_RMW(atomicAdd, int, old + val)
FSGEN_SIMT_RMW(atomicAdd, unsigned int, old + val)
FSGEN_SIMT_RMW(atomicAdd, unsigned long long, old + val)
FSGEN_SIMT_RMW(atomicAdd, float, old + val)
FSGEN_SIMT_RMW(atomicAdd, double, old + val)
FSGEN_SIMT_RMW(atomicSub, int, old - val)
FSGEN_SIMT_RMW(atomicSub, unsigned int, old - val)
FSGEN_SIMT_RMW(atomicExch, int, val)
FSGEN_SIMT_RMW(atomicExch, unsigned int, val)
FSGEN_SIMT_RMW(atomicExch, unsigned long long, val)
FSGEN_SIMT_RMW(atomicExch, float, val)
FSGEN_SIMT_RMW(atomicMax, int, old > val ? old : val)
FSGEN_SIMT_RMW(atomicMax, unsigned int, old > val ? old : val)
FSGEN_SIMT_RMW(atomicMax, long long, old > val ? old : val)
FSGEN_SIMT_RMW(atomicMax, unsigned long long, old > val ? old : val)
FSGEN_SIMT_RMW(atomicMin, int, old < val ? old : val)
FSGEN_SIMT_RMW(atomicMin, unsigned int, old < val ? old : val)
FSGEN_SIMT_RMW(atomicMin, long long, old < val ? old : val)
FSGEN_SIMT_RMW(atomicMin, unsigned long long, old < val ? old : val)
FSGEN_SIMT_RMW(atomicAnd, int, old & val)
FSGEN_SIMT_RMW(atomicAnd, unsigned int, old & val)
FSGEN_SIMT_RMW(atomicAnd, unsigned long long, old & val)
FSGEN_SIMT_RMW(atomicOr, int, old | val)
FSGEN_SIMT_RMW(atomicOr, unsigned int, old | val)
FSGEN_SIMT_RMW(atomicOr, unsigned long long, old | val)
FSGEN_SIMT_RMW(atomicXor, int, old ^ val)
FSGEN_SIMT_RMW(atomicXor, unsigned int, old ^ val)
FSGEN_SIMT_RMW(atomicXor, unsigned long long, old ^ val)
FSGEN_SIMT_RMW(atomicInc, unsigned int, old >= val ? 0u : old + 1u)
FSGEN_SIMT_RMW(atomicDec, unsigned int, (old == 0u || old > val) ? val : old - 1u)
#undef FSGEN_SIMT_RMW
#define FSGEN_SIMT_CAS(T)                                 \
  inline T atomicCAS(T* address, T compare, T val) {      \
    const T old = *address;                               \
    if (old == compare) {                                 \
      *address = val;                                     \
    } else {                                              \
      fsgen::simt::yield(); /* a spin lock's holder runs */ \
    }                                                     \
    return old;                                           \
  }
FSGEN_SIMT_CAS(int)
FSGEN_SIMT_CAS(unsigned int)
FSGEN_SIMT_CAS(unsigned long long)
FSGEN_SIMT_CAS(unsigned short)
#undef FSGEN_SIMT_CAS
// CUDA names the _block / _system scopes separately; one thread runs at a time, so they are the same.
#define atomicAdd_block atomicAdd
#define atomicAdd_system atomicAdd
#define atomicMax_block atomicMax
#define atomicMin_block atomicMin
#define atomicCAS_block atomicCAS
#define atomicExch_block atomicExch

// ---- math, min / max, bit casts --------------------------------------------------------------------------
// min/max: the overloads of CUDA's math headers (ambiguous calls stay ambiguous, as with nvcc).
#define FSGEN_SIMT_MINMAX(T)                                   \
  inline T min(T a, T b) { return a < b ? a : b; }              \
  inline T max(T a, T b) { return a > b ? a : b; }
FSGEN_SIMT_MINMAX(int)
FSGEN_SIMT_MINMAX(unsigned int)
FSGEN_SIMT_MINMAX(long)
FSGEN_SIMT_MINMAX(unsigned long)
FSGEN_SIMT_MINMAX(long long)
FSGEN_SIMT_MINMAX(unsigned long long)
#undef FSGEN_SIMT_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline unsigned int min(int a, unsigned int b) { return min(static_cast<unsigned int>(a), b); }
inline unsigned int min(unsigned int a, int b) { return min(a, static_cast<unsigned int>(b)); }
inline unsigned int max(int a, unsigned int b) { return max(static_cast<unsigned int>(a), b); }
inline unsigned int max(unsigned int a, int b) { return max(a, static_cast<unsigned int>(b)); }

// Fast-math intrinsics: the accurate host functions (results may differ from a GPU in the last bits).
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __saturatef(float x) { return x != x ? 0.0f : fminf(fmaxf(x, 0.0f), 1.0f); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline int __float2int_rn(float x) { return static_cast<int>(nearbyintf(x)); }
inline int __float2int_rz(float x) { return static_cast<int>(x); }
inline float __int2float_rn(int x) { return static_cast<float>(x); }

inline unsigned int __float_as_uint(float x) { return fsgen::simt::from_bits<unsigned int>(fsgen::simt::to_bits(x)); }
inline int __float_as_int(float x) { return fsgen::simt::from_bits<int>(fsgen::simt::to_bits(x)); }
inline float __uint_as_float(unsigned int x) { return fsgen::simt::from_bits<float>(x); }
inline float __int_as_float(int x) { return fsgen::simt::from_bits<float>(static_cast<uint32_t>(x)); }
inline long long __double_as_longlong(double x) { return fsgen::simt::from_bits<long long>(fsgen::simt::to_bits(x)); }
inline double __longlong_as_double(long long x) { return fsgen::simt::from_bits<double>(static_cast<uint64_t>(x)); }

inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned int __brev(unsigned int x) {
  unsigned int r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}

// ---- vector types ------------------------------------------------------------------------------------
#define FSGEN_SIMT_VEC2(name, T, align)                                       \
  struct alignas(align) name {                                                \
    T x, y;                                                                   \
  };                                                                          \
  inline name make_##name(T x, T y) { return name{x, y}; }
#define FSGEN_SIMT_VEC4(name, T, align)                                       \
  struct alignas(align) name {                                                \
    T x, y, z, w;                                                             \
  };                                                                          \
  inline name make_##name(T x, T y, T z, T w) { return name{x, y, z, w}; }
FSGEN_SIMT_VEC2(float2, float, 8)
FSGEN_SIMT_VEC4(float4, float, 16)
FSGEN_SIMT_VEC2(int2, int, 8)
FSGEN_SIMT_VEC4(int4, int, 16)
FSGEN_SIMT_VEC2(uint2, unsigned int, 8)
FSGEN_SIMT_VEC4(uint4, unsigned int, 16)
FSGEN_SIMT_VEC2(double2, double, 16)
FSGEN_SIMT_VEC2(longlong2, long long, 16)
FSGEN_SIMT_VEC2(ulonglong2, unsigned long long, 16)
FSGEN_SIMT_VEC2(ushort2, unsigned short, 4)
FSGEN_SIMT_VEC4(ushort4, unsigned short, 8)
FSGEN_SIMT_VEC4(char4, signed char, 4)
FSGEN_SIMT_VEC4(uchar4, unsigned char, 4)
#undef FSGEN_SIMT_VEC2
#undef FSGEN_SIMT_VEC4
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }
