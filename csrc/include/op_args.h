// Keyword names of every native entry point, in the order of the C++ parameters. The CPU and CUDA
// versions of an op share one list (CUDA adds FSGEN_CUDA_ARGS); the Python callers in
// fsgen_engine/ops pass exactly these names. Pointers are data_ptr() values, strides are in
// elements, `dtype` codes are fsgen::DType (fsgen_engine/ops/_native.py: DTYPE_CODES).
#pragma once

#include "fsgen.h"

// The device index of the tensors (the entry point makes it current for the call) and the
// cudaStream_t to launch on.
#define FSGEN_CUDA_ARGS py::arg("device"), py::arg("stream")

// Split rows (CUDA entry points of token_stats, fuse_logits, sample, verify): `splits` column splits
// per row (<= 1: the one-block-per-row kernels), a device `workspace` of `workspace_bytes` bytes
// (at least what the op's `<op>_cuda_workspace(rows, vocab, splits)` returns; 0 bytes when splits <= 1).
#define FSGEN_CUDA_SPLIT_ARGS py::arg("splits"), py::arg("workspace"), py::arg("workspace_bytes")
#define FSGEN_WORKSPACE_ARGS py::arg("rows"), py::arg("vocab"), py::arg("splits")
// sample / verify on CUDA: `all_greedy` promises that every row has temperature 0 (known on the
// host), so the split pipeline launches only its argmax passes.
#define FSGEN_ALL_GREEDY_ARG py::arg("all_greedy")

// logits [batch, vocab] (unit stride along vocab); float32 out_stats [4, batch] (entropy, max_prob,
// margin, logsumexp); int64 out_argmax [batch].
#define FSGEN_TOKEN_STATS_ARGS                                                                      \
  py::arg("logits"), py::arg("batch"), py::arg("vocab"), py::arg("row_stride"), py::arg("dtype"),  \
      py::arg("out_stats"), py::arg("out_argmax")

// Rows [batch, >= vocab] of each input (small_ft may be 0: not read); float32 out [batch, vocab]
// contiguous = w_large*large + w_small*small + w_small_ft*small_ft, -inf where
// large < log_alpha + max(large[:, :vocab]) (log_alpha = -inf: no mask).
#define FSGEN_FUSE_LOGITS_ARGS                                                                          \
  py::arg("large"), py::arg("large_stride"), py::arg("large_dtype"), py::arg("small"),                  \
      py::arg("small_stride"), py::arg("small_dtype"), py::arg("small_ft"), py::arg("small_ft_stride"), \
      py::arg("small_ft_dtype"), py::arg("batch"), py::arg("vocab"), py::arg("w_large"), py::arg("w_small"), \
      py::arg("w_small_ft"), py::arg("log_alpha"), py::arg("out")

// logits [batch, vocab]; float32 temperature/top_p/min_p [batch], int64 top_k [batch], int64 seed [1],
// int64 out [batch].
#define FSGEN_SAMPLE_ARGS                                                                           \
  py::arg("logits"), py::arg("batch"), py::arg("vocab"), py::arg("row_stride"), py::arg("dtype"),  \
      py::arg("temperature"), py::arg("top_k"), py::arg("top_p"), py::arg("min_p"), py::arg("seed"), \
      py::arg("out")

// int64 draft_tokens [batch, max_draft]; logits [batch, max_draft + 1, vocab]; draft_probs
// [batch, max_draft, vocab] or 0 (a deterministic draft: one-hot q); int64 num_draft [batch];
// sampling parameters as for sample; int64 out_accepted / out_next [batch].
#define FSGEN_VERIFY_ARGS                                                                                  \
  py::arg("draft_tokens"), py::arg("draft_stride"), py::arg("logits"), py::arg("logits_stride_b"),         \
      py::arg("logits_stride_k"), py::arg("logits_dtype"), py::arg("draft_probs"), py::arg("probs_stride_b"), \
      py::arg("probs_stride_k"), py::arg("probs_dtype"), py::arg("num_draft"), py::arg("batch"),           \
      py::arg("max_draft"), py::arg("vocab"), py::arg("temperature"), py::arg("top_k"), py::arg("top_p"),  \
      py::arg("min_p"), py::arg("seed"), py::arg("out_accepted"), py::arg("out_next")

// q/out [num_tokens, num_heads, head_dim], caches [num_pages, page_size, num_kv_heads, head_dim]
// (unit stride along head_dim), int32 page_table [batch, max_pages] (row stride pt_stride),
// seq_lens [batch], cu_q_lens [batch + 1].
#define FSGEN_PAGED_ATTENTION_ARGS                                                                          \
  py::arg("q"), py::arg("k_cache"), py::arg("v_cache"), py::arg("page_table"), py::arg("seq_lens"),         \
      py::arg("cu_q_lens"), py::arg("out"), py::arg("batch"), py::arg("num_tokens"), py::arg("num_heads"),  \
      py::arg("num_kv_heads"), py::arg("head_dim"), py::arg("num_pages"), py::arg("page_size"),              \
      py::arg("max_pages"), py::arg("pt_stride"), py::arg("q_stride_n"), py::arg("q_stride_h"),             \
      py::arg("k_stride_page"), py::arg("k_stride_slot"), py::arg("k_stride_head"), py::arg("v_stride_page"), \
      py::arg("v_stride_slot"), py::arg("v_stride_head"), py::arg("out_stride_n"), py::arg("out_stride_h"),  \
      py::arg("dtype"), py::arg("scale"), py::arg("causal"), py::arg("window")
