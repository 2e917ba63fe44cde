// Host side of the split-row ops.sample / ops.verify pipeline (csrc/cuda/sample_split.cu), called
// by the CUDA entry points of sample.cu and verify.cu when the caller asks for more than one split.
#pragma once

#include <cstdint>

namespace fsgen {
namespace sampling {

// Logical rows: `batch` rows of `positions` positions each (sample: 1; verify: max_draft + 1).
struct SplitArgs {
  std::uintptr_t logits;
  int64_t stride_b, stride_p;  // element strides of a batch row and of a position
  int dtype;
  int64_t batch, positions, vocab, splits;
  std::uintptr_t temperature, top_k, top_p, min_p, seed;
  std::uintptr_t num_draft;  // verify only (0 for sample)
  bool all_greedy;           // every row has temperature 0: only the argmax passes run
};

struct VerifyExtra {
  std::uintptr_t draft;
  int64_t d_s0;
  std::uintptr_t q;  // 0: a deterministic draft (one-hot q)
  int64_t q_s0, q_s1;
  int q_dtype;
  std::uintptr_t out_accepted;
};

// Splits actually used for `splits` requested (every split non-empty).
int64_t split_splits(int64_t vocab, int64_t splits);
// Workspace bytes for `rows` logical rows (0 when splits <= 1).
int64_t split_workspace_bytes(int64_t rows, int64_t vocab, int64_t splits);
// Run the pipeline; `out` is the sampled token [batch] (sample) or the next token (verify, v != nullptr).
void split_sample_or_verify(const char* where, const SplitArgs& g, const VerifyExtra* v, std::uintptr_t out,
                            std::uintptr_t workspace, int64_t workspace_bytes, int device, std::uintptr_t stream);

}  // namespace sampling
}  // namespace fsgen
