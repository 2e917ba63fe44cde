"""Split rows: how many blocks the CUDA kernels of token_stats, fuse_logits, sample and verify give
each vocabulary row, and their workspace.

At small batch a kernel with one block per row runs a 151936-token row on one SM of 132; the CUDA
entry points then cut each row into ``splits`` column ranges (partial results merged by a small
second kernel, see csrc/cuda/*.cu). ``auto`` aims at a few blocks per SM in all and never cuts a row
finer than ``min_cols`` columns per split, so large batches keep one block per row.
``FSGEN_SPLIT_ROWS=off|N`` overrides the choice (benchmarks of both regimes, tests).
"""
from __future__ import annotations

import functools

import torch

from fsgen_engine.config import env_split_rows
from fsgen_engine.ops._native import native_function

# An H100 / H200 (132 SMs): the split heuristic's device size when the kernels run without a GPU
# (the CUDA emulator in tests), so the emulated grid has the GPU's shape.
DEFAULT_SMS = 132


@functools.lru_cache(maxsize=None)
def _cuda_sms(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return DEFAULT_SMS
    return _cuda_sms(device.index if device.index is not None else torch.cuda.current_device())


def row_splits(device: torch.device, rows: int, vocab: int, *, min_cols: int, blocks_per_sm: int) -> int:
    """Column splits per row for ``rows`` rows of ``vocab`` columns (1: one block per row)."""
    forced = env_split_rows()
    most = max(1, -(-vocab // 4))  # a split holds at least one group of 4 columns
    if forced is not None:
        return min(forced, most)
    return max(1, min(-(-vocab // min_cols), (blocks_per_sm * sm_count(device)) // max(rows, 1)))


def split_args(op: str, device: torch.device, rows: int, vocab: int, *, min_cols: int,
               blocks_per_sm: int) -> tuple[dict, torch.Tensor | None]:
    """The ``splits`` / ``workspace`` / ``workspace_bytes`` keywords of ``{op}_cuda`` and the workspace
    (a uint8 tensor from torch's allocator; the caller keeps it alive until the launch is queued,
    after which the caching allocator reuses it in stream order)."""
    splits = row_splits(device, rows, vocab, min_cols=min_cols, blocks_per_sm=blocks_per_sm)
    if splits <= 1:  # one block per row: no workspace, no allocation on the hot path
        return {"splits": 1, "workspace": 0, "workspace_bytes": 0}, None
    nbytes = int(native_function(f"{op}_cuda_workspace", device)(rows=rows, vocab=vocab, splits=splits))
    ws = torch.empty(nbytes, dtype=torch.uint8, device=device)
    return {"splits": splits, "workspace": ws.data_ptr(), "workspace_bytes": nbytes}, ws
