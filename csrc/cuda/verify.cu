// ops.verify on CUDA: at small batch (splits > 1) the split-row pipeline of sample_split.cu, all
// K+1 positions at once; else one block per row walking positions 0..num_draft; per position the sample
// filter (sampling_common.h), then accept / residual sample / bonus sample. Mirrors
// csrc/cpu/verify.cpp.
#include <cuda_runtime.h>

#include "cuda_launch.h"
#include "fsgen.h"
#include "op_args.h"
#include "sample_split.h"
#include "sampling_common.h"

namespace fsgen {
namespace {

using namespace sampling;

__global__ void __launch_bounds__(kThreads)
    verify_kernel(const int64_t* draft, int64_t d_s0, const char* logits, int64_t l_s0, int64_t l_s1, int dtype,
                  const char* q_base, int64_t q_s0, int64_t q_s1, int q_dtype, const int64_t* num_draft, int64_t K,
                  int64_t V, const float* temperature, const int64_t* top_k, const float* top_p, const float* min_p,
                  const int64_t* seed_ptr, int64_t* out_accepted, int64_t* out_next) {
  __shared__ BlockShared sh;
  const int64_t b = blockIdx.x;
  const uint64_t seed = static_cast<uint64_t>(*seed_ptr);
  const int64_t n = min(max(num_draft[b], static_cast<int64_t>(0)), K);
  const float t = temperature[b];
  const int64_t es = elem_size(dtype), qs = elem_size(q_dtype);
  for (int64_t i = 0; i <= n; ++i) {
    const void* row = logits + (b * l_s0 + i * l_s1) * es;
    const RowFilter f = filter_row_dev(row, dtype, V, t, top_k[b], top_p[b], min_p[b], sh);
    const uint64_t ctr = static_cast<uint64_t>(b * (K + 1) + i);
    const float inv_total = f.greedy ? 0.f : 1.f / static_cast<float>(f.total);
    bool resid = false;
    int64_t x = -1;
    const void* qrow = nullptr;
    if (i < n) {
      x = draft[b * d_s0 + i];
      const bool in_range = x >= 0 && x < V;
      float px = 0.f, qx = 1.f;
      if (in_range) px = f.greedy ? (x == f.argmax ? 1.f : 0.f) : weight_dev(f, clean(load_dev(row, dtype, x)) / t) * inv_total;
      qrow = q_base ? q_base + (b * q_s0 + i * q_s1) * qs : nullptr;
      if (qrow) qx = in_range ? load_dev(qrow, q_dtype, x) : 0.f;
      if (uniform01(seed, kStreamAccept, static_cast<uint64_t>(b), static_cast<uint64_t>(i)) * qx < px) continue;
      resid = true;
    }
    int64_t token = f.argmax;
    if (!f.greedy) {
      // One pass: race over p and over max(0, p - q) with shared noise; p when the residual is 0.
      RaceBest w = race_columns(row, dtype, f, t, inv_total, resid, qrow, q_dtype, x, seed, ctr, threadIdx.x, V);
      const float rsum = block_sum(w.rsum, sh);
      block_argmax(w.best_p, w.arg_p, sh);
      block_argmax(w.best_r, w.arg_r, sh);
      token = (resid && rsum > 0.f) ? w.arg_r : w.arg_p;
    }
    if (threadIdx.x == 0) {
      out_accepted[b] = i;
      out_next[b] = token;
    }
    return;
  }
}

void verify_cuda(std::uintptr_t draft, int64_t d_s0, std::uintptr_t logits, int64_t l_s0, int64_t l_s1, int dtype,
                 std::uintptr_t q, int64_t q_s0, int64_t q_s1, int q_dtype, std::uintptr_t num_draft, int64_t B,
                 int64_t K, int64_t V, std::uintptr_t temperature, std::uintptr_t top_k, std::uintptr_t top_p,
                 std::uintptr_t min_p, std::uintptr_t seed, std::uintptr_t out_accepted, std::uintptr_t out_next,
                 int64_t splits, std::uintptr_t workspace, int64_t workspace_bytes, bool all_greedy, int device,
                 std::uintptr_t stream) {
  if (splits > 1) {
    const SplitArgs g{logits, l_s0, l_s1, dtype, B, K + 1, V, splits, temperature, top_k, top_p, min_p, seed, num_draft,
                      all_greedy};
    const VerifyExtra v{draft, d_s0, q, q_s0, q_s1, q_dtype, out_accepted};
    split_sample_or_verify("verify_cuda", g, &v, out_next, workspace, workspace_bytes, device, stream);
    return;
  }
  launch("verify_cuda", device, stream, static_cast<unsigned>(B), kThreads, 0, verify_kernel, ptr<const int64_t>(draft),
         d_s0, ptr<const char>(logits), l_s0, l_s1, dtype, ptr<const char>(q), q_s0, q_s1, q_dtype,
         ptr<const int64_t>(num_draft), K, V, ptr<const float>(temperature), ptr<const int64_t>(top_k),
         ptr<const float>(top_p), ptr<const float>(min_p), ptr<const int64_t>(seed), ptr<int64_t>(out_accepted),
         ptr<int64_t>(out_next));
}

// rows = batch x (max_draft + 1): one logical row per position.
int64_t verify_cuda_workspace(int64_t rows, int64_t vocab, int64_t splits) {
  return split_workspace_bytes(rows, vocab, splits);
}

FSGEN_DEF(verify_cuda, "ops.verify on CUDA (see op_args.h for the arguments)", FSGEN_VERIFY_ARGS,
          FSGEN_CUDA_SPLIT_ARGS, FSGEN_ALL_GREEDY_ARG, FSGEN_CUDA_ARGS);
FSGEN_DEF(verify_cuda_workspace, "workspace bytes of verify_cuda (rows = batch x (max_draft + 1))",
          FSGEN_WORKSPACE_ARGS);

}  // namespace
}  // namespace fsgen
