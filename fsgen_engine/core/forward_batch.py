"""The one structure every model forward takes: a ragged batch of new tokens over paged KV.

A step feeds ``N`` new tokens belonging to ``B`` sequences (1 token each for decode, ``K+1`` for
verification, any number for prefill or catch-up extend). Token ``j`` of sequence ``b`` is row
``cu_q_lens[b] + j`` of the flattened inputs and sits at absolute position
``seq_lens[b] - (cu_q_lens[b+1] - cu_q_lens[b]) + j``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ForwardBatch:
    """Inputs of one model forward (all tensors on the model's device).

    Attributes:
        input_ids: ``[N]`` int64, the new tokens of every sequence, concatenated.
        positions: ``[N]`` int64, absolute position of each new token (rotary embeddings).
        slot_mapping: ``[N]`` int64, KV slot ``page_id * page_size + offset`` each new token's
            keys/values are written to; ``-1`` skips the row (padding).
        page_table: ``[B, max_pages]`` int32, page ids of each sequence in order (unused entries
            may hold anything, they are never read past ``seq_lens``).
        seq_lens: ``[B]`` int32, each sequence's KV length *after* this step's tokens are stored.
        cu_q_lens: ``[B+1]`` int32, prefix sums of the number of new tokens per sequence.
        logits_indices: ``[M]`` int64, rows of the ``N`` new tokens whose logits the forward
            returns (e.g. the last token of each sequence, or its last ``K+1`` tokens), so no
            ``[N, V]`` tensor is built needlessly.
        max_q_len: host int, the largest number of new tokens of one sequence (kernel grid size).
        max_seq_len: host int, the largest ``seq_lens`` entry (kernel grid size).
    """

    input_ids: torch.Tensor
    positions: torch.Tensor
    slot_mapping: torch.Tensor
    page_table: torch.Tensor
    seq_lens: torch.Tensor
    cu_q_lens: torch.Tensor
    logits_indices: torch.Tensor
    max_q_len: int
    max_seq_len: int

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.seq_lens.shape[0])
