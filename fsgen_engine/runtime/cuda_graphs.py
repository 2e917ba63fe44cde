"""CUDA graphs for the uniform steps: System 1's decode (1 token per row) and System 2's verify (K+1).

A decode step of a small model is dozens of tiny kernel launches whose CPU cost exceeds their GPU
time; replaying a captured graph launches them all at once. ``GraphedForward`` wraps one model's
``forward`` over its KV cache and replays a graph per key ``(batch bucket, q_len, n_logits, context
bucket)``, captured lazily the first time the key is met:

* batch bucket: the step's batch rounded up to 1, 2, 4, 8, 16, 32, ... (and ``max_batch``); padding
  rows feed token 0 at position 0, store nothing (slot -1) and attend to ``q_len`` keys of page 0;
  their logits are dropped.
* q_len: every row feeds the same number of new tokens (1 for decode, K+1 for verification, up to
  ``max_q_len``); ragged steps (prefill, catch-up extend) run eagerly.
* n_logits: the forward returns the last token of each row (1) or all of them (``q_len``).
* context bucket: the attention grid is sized for a context of ``256, 512, ...`` tokens (the kernel
  stops at each row's real length); a graph serves every step whose longest row fits.

All graphs read one set of static input buffers (token ids, positions, slots, page table, lengths);
``run`` copies a step's ``ForwardBatch`` into them, replays and returns a copy of the logits (graph
outputs share one memory pool and are overwritten by the next replay). Graphs are used only on CUDA,
for the models of ``fsgen_engine.models`` whose attention runs on the Triton kernel; everything else,
and ``FSGEN_CUDA_GRAPHS=0``, runs eagerly. ``EmulatedGraphs`` replays by re-running the captured
function on the static buffers, which checks the same buffer discipline on a CPU.
"""
from __future__ import annotations

import torch

from fsgen_engine.core import ForwardBatch

MIN_CONTEXT_BUCKET = 256


def batch_buckets(max_batch: int) -> list[int]:
    """Batch sizes graphs are captured for: powers of two below ``max_batch``, and ``max_batch``."""
    out, b = [], 1
    while b < max_batch:
        out.append(b)
        b *= 2
    return out + [int(max_batch)]


class CudaGraphs:
    """Capture/replay with ``torch.cuda.CUDAGraph``; all graphs share one memory pool."""

    def __init__(self, device: torch.device):
        self.device = device
        self.pool = torch.cuda.graph_pool_handle()
        self.stream = torch.cuda.Stream(device)

    def capture(self, fn):
        # warm up on a side stream first: Triton compiles and cuBLAS picks its kernels outside the capture
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            for _ in range(2):
                fn()
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = fn()
        return graph, out

    @staticmethod
    def replay(handle) -> torch.Tensor:
        graph, out = handle
        graph.replay()
        return out


class EmulatedGraphs:
    """Stand-in for ``CudaGraphs`` on a CPU: replay re-runs the captured function and writes its result
    into the output tensor of the capture, so whatever a step reads must come from the static buffers."""

    def __init__(self):
        self.captures = 0
        self.replays = 0

    def capture(self, fn):
        self.captures += 1
        return fn, fn()

    def replay(self, handle) -> torch.Tensor:
        fn, out = handle
        self.replays += 1
        out.copy_(fn())
        return out


def graphs_supported(model) -> str | None:
    """None when ``model`` can be graphed on its device, else the reason it cannot."""
    from fsgen_engine.models.base import CausalLM
    from fsgen_engine.ops.paged_attention import HEAD_DIMS

    if getattr(model, "tp_size", 1) > 1:
        return (f"tensor parallel over {model.tp_size} ranks: eager steps (the per-step broadcast and the "
                f"collectives are not captured)")
    if not isinstance(model, CausalLM):
        return f"{type(model).__name__} is not an fsgen_engine model"
    if model.device.type != "cuda":
        return f"model is on {model.device}, not CUDA"
    if model.head_dim not in HEAD_DIMS:
        return f"head_dim {model.head_dim} runs on the reference attention (Triton supports {HEAD_DIMS})"
    return None


class GraphedForward:
    """Replays captured graphs of ``model.forward(batch, kv)`` for uniform steps (see the module doc).

    Args:
        model: a ``fsgen_engine.models`` CausalLM. kv: its ``ModelKVCache`` (the pool's cache of it).
        max_batch: the largest batch a step may have. max_pages: page-table width of the static buffer
            (a row needing more pages runs eagerly). page_size: tokens per page.
        max_q_len: the largest uniform ``q_len`` graphed (verification of K drafts feeds K+1; the engine
            passes its longest verification, so no K it accepts falls back to eager steps). The static
            buffers hold ``max_batch * max_q_len`` tokens; graphs are captured per ``q_len`` met.
        backend: ``CudaGraphs`` (default on CUDA) or ``EmulatedGraphs``.
    """

    def __init__(self, model, kv, *, max_batch: int, max_pages: int, page_size: int, max_q_len: int,
                 backend=None):
        self.model, self.kv = model, kv
        self.device = torch.device(model.device)
        self.buckets = batch_buckets(max_batch)
        self.max_pages, self.page_size, self.max_q_len = int(max_pages), int(page_size), int(max_q_len)
        self.backend = backend if backend is not None else CudaGraphs(self.device)
        B, T = self.buckets[-1], self.buckets[-1] * self.max_q_len
        dev = self.device
        self.input_ids = torch.zeros(T, dtype=torch.int64, device=dev)
        self.positions = torch.zeros(T, dtype=torch.int64, device=dev)
        self.slot_mapping = torch.full((T,), -1, dtype=torch.int64, device=dev)
        self.page_table = torch.zeros((B, self.max_pages), dtype=torch.int32, device=dev)
        self.seq_lens = torch.ones(B, dtype=torch.int32, device=dev)
        self.graphs: dict[tuple, tuple] = {}
        self._keep: list = []   # tensors captured graphs read (rotary tables) stay alive if the model rebuilds them

    def bucket(self, batch_size: int) -> int | None:
        for b in self.buckets:
            if b >= batch_size:
                return b
        return None

    def accepts(self, batch: ForwardBatch, q_len: int, n_logits: int) -> bool:
        """Whether ``run`` can serve a step of ``batch.batch_size`` rows feeding ``q_len`` tokens each."""
        return (1 <= q_len <= self.max_q_len and n_logits in (1, q_len)
                and self.bucket(batch.batch_size) is not None
                and batch.page_table.shape[1] <= self.max_pages
                and batch.max_seq_len <= self.max_pages * self.page_size
                and batch.num_tokens == batch.batch_size * q_len)

    def _context_bucket(self, max_seq_len: int) -> int:
        c = MIN_CONTEXT_BUCKET
        while c < max_seq_len:
            c *= 2
        return min(c, self.max_pages * self.page_size)

    def run(self, batch: ForwardBatch, q_len: int, n_logits: int) -> torch.Tensor:
        """Logits ``[B * n_logits, V]`` float32 (row-major over rows, then positions), as ``model.forward``
        with ``logits_indices`` = the last ``n_logits`` tokens of each row."""
        B, N = batch.batch_size, batch.num_tokens
        Bp = self.bucket(B)
        Np = Bp * q_len
        w = batch.page_table.shape[1]
        self.input_ids[:N].copy_(batch.input_ids, non_blocking=True)
        self.positions[:N].copy_(batch.positions, non_blocking=True)
        self.slot_mapping[:N].copy_(batch.slot_mapping, non_blocking=True)
        self.page_table[:B, :w].copy_(batch.page_table, non_blocking=True)
        self.seq_lens[:B].copy_(batch.seq_lens, non_blocking=True)
        if Bp > B:  # padding rows: store nothing, attend to q_len keys of page 0
            self.slot_mapping[N:Np].fill_(-1)
            self.positions[N:Np].zero_()
            self.seq_lens[B:Bp].fill_(q_len)
            self.page_table[B:Bp].zero_()
        key = (Bp, q_len, n_logits, self._context_bucket(batch.max_seq_len))
        handle = self.graphs.get(key)
        if handle is None:
            handle = self.graphs[key] = self._capture(*key)
        out = self.backend.replay(handle)
        return out[:B * n_logits].clone()

    def _capture(self, Bp: int, q_len: int, n_logits: int, context: int):
        dev = self.device
        cu = torch.arange(Bp + 1, dtype=torch.int32, device=dev) * q_len
        rows = (torch.arange(Bp, device=dev)[:, None] * q_len + (q_len - n_logits)
                + torch.arange(n_logits, device=dev)[None, :]).reshape(-1)
        static = ForwardBatch(
            input_ids=self.input_ids[:Bp * q_len], positions=self.positions[:Bp * q_len],
            slot_mapping=self.slot_mapping[:Bp * q_len], page_table=self.page_table[:Bp],
            seq_lens=self.seq_lens[:Bp], cu_q_lens=cu, logits_indices=rows, max_q_len=q_len, max_seq_len=context)
        model, kv = self.model, self.kv
        rotary = getattr(model, "rotary", None)
        if rotary is not None:  # grow the cos/sin tables now so the graph reads the final ones
            rotary.tables(static.positions[:1], context)
            self._keep += [rotary.cos, rotary.sin]
        self._keep += [cu, rows]
        return self.backend.capture(lambda: model.forward(static, kv))

    def __repr__(self) -> str:
        return (f"GraphedForward(buckets={self.buckets}, max_q_len={self.max_q_len}, max_pages={self.max_pages}, "
                f"graphs={len(self.graphs)})")

