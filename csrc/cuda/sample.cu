// ops.sample on CUDA: at small batch (splits > 1) the split-row pipeline of sample_split.cu; else one block per row; radix-select thresholds (sampling_common.h) then an
// exponential race with counter-based noise. Mirrors csrc/cpu/sample.cpp; no host sync (the seed
// is read from device memory).
#include <cuda_runtime.h>

#include "cuda_launch.h"
#include "fsgen.h"
#include "op_args.h"
#include "sample_split.h"
#include "sampling_common.h"

namespace fsgen {
namespace {

using namespace sampling;

__global__ void __launch_bounds__(kThreads) sample_kernel(const char* logits, int64_t V, int64_t row_stride, int dtype,
                                                          const float* temperature, const int64_t* top_k,
                                                          const float* top_p, const float* min_p,
                                                          const int64_t* seed_ptr, int64_t* out) {
  __shared__ BlockShared sh;
  const int64_t b = blockIdx.x;
  const void* row = logits + b * row_stride * elem_size(dtype);
  const RowFilter f = filter_row_dev(row, dtype, V, temperature[b], top_k[b], top_p[b], min_p[b], sh);
  if (f.greedy) {
    if (threadIdx.x == 0) out[b] = f.argmax;
    return;
  }
  const uint64_t seed = static_cast<uint64_t>(*seed_ptr);
  RaceBest w = race_columns(row, dtype, f, f.t, 1.f, false, nullptr, 0, -1, seed, static_cast<uint64_t>(b),
                            threadIdx.x, V);
  block_argmax(w.best_p, w.arg_p, sh);
  if (threadIdx.x == 0) out[b] = w.arg_p;
}

void sample_cuda(std::uintptr_t logits, int64_t B, int64_t V, int64_t row_stride, int dtype, std::uintptr_t temperature,
                 std::uintptr_t top_k, std::uintptr_t top_p, std::uintptr_t min_p, std::uintptr_t seed,
                 std::uintptr_t out, int64_t splits, std::uintptr_t workspace, int64_t workspace_bytes,
                 bool all_greedy, int device, std::uintptr_t stream) {
  if (splits > 1) {
    const SplitArgs g{logits, row_stride, 0, dtype, B, 1, V, splits, temperature, top_k, top_p, min_p, seed, 0,
                      all_greedy};
    split_sample_or_verify("sample_cuda", g, nullptr, out, workspace, workspace_bytes, device, stream);
    return;
  }
  launch("sample_cuda", device, stream, static_cast<unsigned>(B), kThreads, 0, sample_kernel, ptr<const char>(logits),
         V, row_stride, dtype, ptr<const float>(temperature), ptr<const int64_t>(top_k), ptr<const float>(top_p),
         ptr<const float>(min_p), ptr<const int64_t>(seed), ptr<int64_t>(out));
}

int64_t sample_cuda_workspace(int64_t rows, int64_t vocab, int64_t splits) {
  return split_workspace_bytes(rows, vocab, splits);
}

FSGEN_DEF(sample_cuda, "ops.sample on CUDA (see op_args.h for the arguments)", FSGEN_SAMPLE_ARGS,
          FSGEN_CUDA_SPLIT_ARGS, FSGEN_ALL_GREEDY_ARG, FSGEN_CUDA_ARGS);
FSGEN_DEF(sample_cuda_workspace, "workspace bytes of sample_cuda (rows = batch)", FSGEN_WORKSPACE_ARGS);

}  // namespace
}  // namespace fsgen
