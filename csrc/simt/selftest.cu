// Test-only kernels of the SIMT emulator (compiled into _C_simt alone, tests/ops/test_cuda_emulated.py):
// warp shuffles / votes against a Python model, atomics from many blocks, the last-block-done pattern,
// thread and block numbering, and kernels that must raise (divergent barriers, bad launches).
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "cuda_launch.h"
#include "fsgen.h"

namespace fsgen {
namespace {

// op: 0 idx, 1 up, 2 down, 3 xor, 4 ballot(in & 1), 5 any(in & 1), 6 all(in & 1), 7 syncwarp+neighbour
template <typename T>
__global__ void shuffle_kernel(const T* in, T* out, int op, int arg, int width) {
  const int t = threadIdx.x;
  const T v = in[t];
  T r;
  switch (op) {
    case 0: r = __shfl_sync(0xffffffffu, v, arg, width); break;
    case 1: r = __shfl_up_sync(0xffffffffu, v, static_cast<unsigned>(arg), width); break;
    case 2: r = __shfl_down_sync(0xffffffffu, v, static_cast<unsigned>(arg), width); break;
    case 3: r = __shfl_xor_sync(0xffffffffu, v, arg, width); break;
    case 4: r = static_cast<T>(__ballot_sync(0xffffffffu, static_cast<int64_t>(v) & 1)); break;
    case 5: r = static_cast<T>(__any_sync(0xffffffffu, static_cast<int64_t>(v) & 1)); break;
    default: r = static_cast<T>(__all_sync(0xffffffffu, static_cast<int64_t>(v) & 1)); break;
  }
  out[t] = r;
}

template <typename T>
void shuffle(std::uintptr_t in, std::uintptr_t out, int threads, int op, int arg, int width) {
  launch("simt_test_shuffle", 0, 0, 1, threads, 0, shuffle_kernel<T>, ptr<const T>(in), ptr<T>(out), op, arg, width);
}

void simt_test_shuffle(std::uintptr_t in, std::uintptr_t out, int dtype, int threads, int op, int arg, int width) {
  if (dtype == 0) return shuffle<float>(in, out, threads, op, arg, width);
  if (dtype == 1) return shuffle<int64_t>(in, out, threads, op, arg, width);
  return shuffle<double>(in, out, threads, op, arg, width);
}

// Every thread adds 1 to global counters of each atomic type; each block also sums in shared memory
// and checks __syncthreads_count; the last block to finish (counter + __threadfence) writes the totals.
struct Totals {
  int i;
  unsigned u;
  unsigned long long ull;
  float f;
  double d;
  int max_block;
  unsigned done;
  int last_block;
  unsigned long long shared_sum;
  int count_ok;
  unsigned long long last_seen_ull;
};

__global__ void atomics_kernel(Totals* tot) {
  __shared__ unsigned block_sum;
  __shared__ bool is_last;
  const unsigned bid = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  if (tid == 0) block_sum = 0;
  __syncthreads();
  atomicAdd(&tot->i, 1);
  atomicAdd(&tot->u, 1u);
  atomicAdd(&tot->ull, 1ull);
  atomicAdd(&tot->f, 1.f);
  atomicAdd(&tot->d, 1.0);
  atomicMax(&tot->max_block, static_cast<int>(bid));
  atomicAdd(&block_sum, tid + 1);
  const int n_even = __syncthreads_count((tid & 1) == 0);
  const unsigned n = blockDim.x * blockDim.y * blockDim.z;
  if (tid == 0) {
    atomicAdd(&tot->shared_sum, static_cast<unsigned long long>(block_sum));
    if (n_even == static_cast<int>(n / 2)) atomicAdd(&tot->count_ok, 1);
    __threadfence();
    const unsigned prev = atomicAdd(&tot->done, 1u);
    is_last = prev == gridDim.x * gridDim.y * gridDim.z - 1;
  }
  __syncthreads();
  if (is_last && tid == 0) {
    tot->last_block = static_cast<int>(bid);
    tot->last_seen_ull = atomicAdd(&tot->ull, 0ull);
  }
}

void simt_test_atomics(std::uintptr_t totals, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                       unsigned bz) {
  launch("simt_test_atomics", 0, 0, dim3(gx, gy, gz), dim3(bx, by, bz), 0, atomics_kernel, ptr<Totals>(totals));
}

// out[block * n + thread] = launch-order ticket; ids[...] = (blockIdx, threadIdx) packed.
__global__ void order_kernel(int* ticket, int* out, int64_t* ids) {
  const unsigned bid = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned n = blockDim.x * blockDim.y * blockDim.z;
  const unsigned tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  __syncthreads();
  if (tid == 0) out[bid] = atomicAdd(ticket, 1);
  ids[bid * n + tid] = ((((((static_cast<int64_t>(blockIdx.z) << 10) | blockIdx.y) << 10) | blockIdx.x) << 10 |
                         threadIdx.z) << 10 | threadIdx.y) << 10 | threadIdx.x;
}

void simt_test_order(std::uintptr_t ticket, std::uintptr_t out, std::uintptr_t ids, unsigned gx, unsigned gy,
                     unsigned gz, unsigned bx, unsigned by, unsigned bz) {
  launch("simt_test_order", 0, 0, dim3(gx, gy, gz), dim3(bx, by, bz), 0, order_kernel, ptr<int>(ticket), ptr<int>(out),
         ptr<int64_t>(ids));
}

// Kernels that must raise instead of hanging.
__global__ void bad_kernel(int which) {
  const int t = threadIdx.x;
  if (which == 0) {  // half a warp at __syncthreads, the other half at __syncwarp waiting for it
    if ((t & 31) < 16) {
      __syncthreads();
    } else {
      __syncwarp();
    }
  } else if (which == 1) {  // lanes of one warp at different warp operations
    if ((t & 31) < 16) {
      __syncwarp();
    } else {
      __ballot_sync(0xffffffffu, 1);
    }
  } else if (which == 2) {  // a mask without the calling lane
    __syncwarp(0x1u);
  } else if (which == 3) {  // a spin lock nobody releases: a livelock, reported
    __shared__ int lock;
    if (t == 0) lock = 1;
    __syncthreads();
    while (atomicCAS(&lock, 0, 1) != 0) {
    }
  } else if (which == 4) {
    __trap();
  }
}

void simt_test_bad(int which, unsigned threads, std::uintptr_t smem) {
  launch("simt_test_bad", 0, 0, 2, threads, smem, bad_kernel, which);
}

// A spin lock in shared memory that is released: the emulator must make progress (atomicCAS yields).
__global__ void lock_kernel(int* out) {
  __shared__ int lock;
  __shared__ int counter;
  if (threadIdx.x == 0) lock = 0, counter = 0;
  __syncthreads();
  while (atomicCAS(&lock, 0, 1) != 0) {
  }
  counter += 1;  // critical section
  __threadfence_block();
  atomicExch(&lock, 0);
  __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = counter;
}

void simt_test_lock(std::uintptr_t out, unsigned blocks, unsigned threads) {
  launch("simt_test_lock", 0, 0, blocks, threads, 0, lock_kernel, ptr<int>(out));
}

Registrar selftest_registrar([](py::module_& m) {
  m.def("simt_test_shuffle", &simt_test_shuffle, "test kernel: one warp-level op per thread (dtype 0 f32, 1 i64, 2 f64)");
  m.def("simt_test_atomics", &simt_test_atomics, "test kernel: atomics from every thread of a grid into Totals");
  m.def("simt_test_order", &simt_test_order, "test kernel: block execution order and thread/block indices");
  m.def("simt_test_bad", &simt_test_bad, "test kernel: a launch that must raise (0 divergent barrier, 1 mixed warp ops, "
        "2 mask without the lane, 3 livelock, 4 __trap)");
  m.def("simt_test_lock", &simt_test_lock, "test kernel: a shared-memory spin lock taken by every thread");
  m.attr("simt_test_totals_size") = sizeof(Totals);
});

}  // namespace
}  // namespace fsgen
