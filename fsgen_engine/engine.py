"""Engine: owns the models, the shared paged KV pool and the decode loop.

    from fsgen_engine import Engine, MethodOptions, SamplingParams
    eng = Engine("Qwen/large-folder", "small.gguf")                 # or "early_exit:N" as small
    outs = eng.generate(["Question: ..."], SamplingParams(temperature=0.7, seed=0), method="speculative",
                        options=MethodOptions(num_draft_tokens=5))

Rows are admitted as KV pages allow (each row reserves its worst case up front, so a step never runs
out of pages) and up to ``max_batch`` at a time; a finished row frees its pages at once and the next
prompt joins the running batch at the next step (continuous batching: its prompt is simply the
"pending" tokens of its first forward).
"""
from __future__ import annotations

import os
import time
import weakref

import torch

from fsgen_engine.config import env_cuda_graphs, env_kv_memory, env_page_size
from fsgen_engine.core import SamplingParams, resolve_device, resolve_dtype
from fsgen_engine.generate_args import (MAX_DRAFT_TOKENS, MethodOptions, check_max_new_tokens, check_num_samples,
                                        method_config, resolve_legacy, tokenize_prompts)
from fsgen_engine.kv import KVPool
from fsgen_engine.methods import make_method
from fsgen_engine.methods.tracer import Tracer
from fsgen_engine.models.checks import check_prompt_ids, check_vocabularies, load_model_checked
from fsgen_engine.models.tensor_parallel import TPShard
from fsgen_engine.outputs import GenerationOutput
from fsgen_engine.runtime.cuda_graphs import GraphedForward, graphs_supported
from fsgen_engine.runtime.executor import StepRunner
from fsgen_engine.runtime.model_info import check_tokenizers, eos_ids_of, kv_spec_of, max_positions_of, vocab_size_of
from fsgen_engine.runtime.rows import Row, StopRules
from fsgen_engine.runtime.sampler import Sampler
from fsgen_engine.runtime.scheduler import Scheduler
from fsgen_engine.tp.checks import sharded_roles
from fsgen_engine.tp.runtime import TPRuntime, role_index
from fsgen_engine.tp.sharded_model import ShardedModel
from fsgen_engine.tp.worker import load_shards

# Slack in the KV sizing. A row's KV never holds more than prompt + max_new - 1 + lookahead tokens
# (the KV lag rule, runtime/rows.py, plus the drafts a method feeds past its tokens); every bound below
# adds a little on top of that on purpose, so an off-by-one in a method costs a page, not a crash.
ROW_SLACK_TOKENS = 1        # pages reserved per row: prompt + max_new + lookahead + 1 tokens
POOL_CAP_SLACK_TOKENS = 2   # pool size cap: max_batch full-context rows of max_positions + 2 tokens each
# CUDA-graph page tables are this many tokens wider than the context: room for a speculative round's
# drafts (a row needing more pages, e.g. adaptive K > 64 near the end of the context, runs eagerly)
GRAPH_SLACK_TOKENS = MAX_DRAFT_TOKENS
# CUDA graphs cover uniform steps of up to this many tokens per row: the longest verification the
# engine runs (adaptive K reaches 2 x MAX_DRAFT_TOKENS drafts, verified with one more position)
GRAPH_MAX_Q_LEN = 2 * MAX_DRAFT_TOKENS + 1


class Engine:
    """Collaborative decoding over a large, a small and optionally a small fine-tuned model.

    Each model is a local HF folder, a GGUF file, a model object of ``fsgen_engine.models`` (an HF
    ``PreTrainedModel`` is converted with ``from_hf_model``), or ``"early_exit:N"``: the large model's
    first N layers + its final norm and LM head, sharing its weights (self-speculative drafting).
    The tokenizers must agree on every shared id (vocab sizes may differ by padding rows only).
    All models share one paged KV pool of ``kv_memory`` bytes (``"2GiB"``, a fraction of free device
    memory, or None: ``FSGEN_KV_MEMORY``) with ``page_size`` tokens per page (None: ``FSGEN_PAGE_SIZE``,
    16 by default); ``num_pages`` fixes the page count instead (tests). ``cuda_graphs``: replay CUDA
    graphs of the uniform decode and verify steps (None = ``FSGEN_CUDA_GRAPHS``, on by default; only
    on CUDA; ``engine.graph_status`` says per model whether graphs are used and why not; they cover
    decode and the verification of every K ``generate`` accepts, up to ``GRAPH_MAX_Q_LEN`` tokens per
    row). ``tensor_parallel=N``: the large model sharded over N ranks (worker processes this engine
    starts, or a ``torchrun`` launch; models given as paths); ``small_tensor_parallel``: System 1 whole
    on rank 0 (1) or sharded the same way (N). See ``fsgen_engine/tp``; ``close()`` or ``with
    Engine(...) as e:`` stops the workers.
    """

    def __init__(self, large, small, small_ft=None, *, device="auto", dtype="auto", kv_memory=None,
                 max_batch: int = 32, page_size: int | None = None, num_pages: int | None = None,
                 cuda_graphs: bool | None = None, tensor_parallel: int = 1, small_tensor_parallel: int = 1):
        self._tp = None
        if cuda_graphs not in (None, True, False):
            raise ValueError(f"cuda_graphs={cuda_graphs!r} must be True, False or None (FSGEN_CUDA_GRAPHS, on by default)")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch={max_batch!r} must be an integer >= 1")
        if page_size is None:
            page_size = env_page_size()
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ValueError(f"page_size={page_size!r} must be an integer >= 1 (tokens per KV page), e.g. 16")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.max_batch = max_batch
        self._args = (max_batch, page_size, num_pages, kv_memory, cuda_graphs)
        self.names = {}
        self.models = {}
        self.tokenizers = {}
        specs = {"large": large, "small": small, **({"small_ft": small_ft} if small_ft is not None else {})}
        self._sharded = sharded_roles(specs, tensor_parallel, small_tensor_parallel)
        if self._sharded:
            self._tp = TPRuntime(tensor_parallel, self.device, self.dtype,
                                 {role_index(r): os.fspath(specs[r]) for r in self._sharded
                                  if not str(specs[r]).startswith("early_exit:")})
            self.device = self._tp.device
            self._finalizer = weakref.finalize(self, self._tp.close)
        try:
            if self._tp is not None and self._tp.rank != 0:   # a torchrun rank > 0: shards only
                self._follower_models = load_shards(self._tp.loads, self._tp.rank, self._tp.size, self.dtype,
                                                    self.device)
                return
            for role, spec in specs.items():
                self._load(role, spec)
            if self._tp is not None:
                self._tp.wait_ready()
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        """KV pool, CUDA graphs and the step machinery over the loaded models."""
        max_batch, page_size, num_pages, kv_memory, cuda_graphs = self._args
        del self._args
        self.tokenizer = self.tokenizers.get("large") or self.tokenizers.get("small") or self.tokenizers.get("small_ft")
        ids = list(self.models)
        for a_i in range(len(ids)):
            for b_i in range(a_i + 1, len(ids)):
                a, b = ids[a_i], ids[b_i]
                check_tokenizers(self.tokenizers.get(a), self.tokenizers.get(b), self.names[a], self.names[b],
                                 vocab_size_of(self.models[a]), vocab_size_of(self.models[b]))
        self._vocab = {r: vocab_size_of(m) for r, m in self.models.items()}
        check_vocabularies(self._vocab, self.names, self.tokenizers, self.tokenizer)
        self.vocab_size = min(self._vocab.values())
        self.max_positions = min(max_positions_of(m) for m in self.models.values())
        self.eos_ids = sorted(eos_ids_of(self.models["large"], self.tokenizer))
        specs = {m: kv_spec_of(model, self.dtype, self.device) for m, model in self.models.items()}
        if num_pages is None:
            # never more pages than max_batch full-context rows of every model could use
            cap = max_batch * len(specs) * -(-(self.max_positions + POOL_CAP_SLACK_TOKENS) // page_size)
            mem = kv_memory if kv_memory is not None else env_kv_memory(self.device.type)
            num_pages = min(cap, KVPool.num_pages_for(specs, page_size, mem))
        self.kv = KVPool.create(specs, page_size=page_size, num_pages=int(num_pages))
        if self._tp is not None:
            self.kv.copy_listener = self._record_copies
        self.graphs = self._build_graphs(cuda_graphs)
        self.runner = StepRunner(self.models, self.kv, self.vocab_size, self.device, graphs=self.graphs)
        self.scheduler = Scheduler(self.kv, self.models, self.max_batch, self._new_seq_id)
        self._next_seq = 0

    def _build_graphs(self, cuda_graphs: bool | None) -> dict:
        """One ``GraphedForward`` per model that can be graphed (CUDA, Triton attention); see runtime/cuda_graphs.py."""
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"cuda_graphs=True needs a CUDA device but the engine runs on {self.device}; "
                             f"leave cuda_graphs=None or pass device='cuda'")
        enabled = env_cuda_graphs() if cuda_graphs is None else cuda_graphs
        self.graph_status = {}
        graphs = {}
        if not enabled or self.device.type != "cuda":
            self.graph_status = {m: "off" for m in self.models}
            return graphs
        S = self.kv.page_size
        # room for the longest row the engine admits: its context plus the drafts of a speculative round
        width = min(self.kv.num_pages, -(-(self.max_positions + GRAPH_SLACK_TOKENS) // S))
        for m, model in self.models.items():
            why = graphs_supported(model)
            self.graph_status[m] = why or "on"
            if why is None:
                graphs[m] = GraphedForward(model, self.kv.cache(m), max_batch=self.max_batch, max_pages=width,
                                           page_size=S, max_q_len=GRAPH_MAX_Q_LEN)
        if graphs:
            self.graph_status["draft_stop"] = (
                "graphed: a draft_stop round feeds every row all the round's drafts (uniform q_len, captured per "
                "q_len like fixed K); rows that stopped early are cut on the device by verify's num_draft")
        return graphs

    # ------------------------------------------------------------------ loading
    def _load(self, role: str, spec) -> None:
        if isinstance(spec, str) and spec.startswith("early_exit:"):
            if role == "large":
                raise ValueError("large='early_exit:N' is not possible: early exit derives a model from the large one")
            arg = spec.split(":", 1)[1]
            try:
                n = int(arg)
            except ValueError:
                raise ValueError(f"{role}={spec!r}: early_exit needs a layer count, e.g. 'early_exit:4'") from None
            large = self.models["large"]
            total = int(getattr(large, "num_layers"))
            if not 1 <= n < total:
                raise ValueError(f"{role}={spec!r}: N must be in [1, {total - 1}] (the large model has {total} layers)")
            # a sharded large's view runs on every rank, over this role's KV cache
            self.models[role] = (large.early_exit(n, role_index(role)) if isinstance(large, ShardedModel)
                                 else large.early_exit(n))
            self.tokenizers[role] = self.tokenizers.get("large")
            self.names[role] = f"{self.names['large']} (early_exit:{n})"
            return
        from fsgen_engine import models as M

        if isinstance(spec, (str, os.PathLike)):
            path = os.fspath(spec)
            if not os.path.exists(path):
                raise ValueError(f"{role}={path!r}: no such model folder or GGUF file")
            if role in self._sharded:
                # rank 0's shard (the other ranks load theirs meanwhile), driven through the TP runtime
                shard, tok = load_model_checked(role, path, dtype=self.dtype, device=self.device,
                                                tp=TPShard(0, self._tp.size))
                model = ShardedModel(shard, self._tp, role_index(role), role_index(role))
            else:
                model, tok = load_model_checked(role, path, dtype=self.dtype, device=self.device)
            self.names[role] = path
        elif hasattr(spec, "forward") and hasattr(spec, "num_layers") and hasattr(spec, "early_exit"):
            model, tok = spec, getattr(spec, "tokenizer", None)
            self.names[role] = getattr(spec, "name", None) or type(spec).__name__
        elif isinstance(spec, torch.nn.Module) and hasattr(spec, "config"):
            model, tok = M.from_hf_model(spec, dtype=self.dtype, device=self.device), None
            if isinstance(model, tuple):
                model, tok = model
            self.names[role] = getattr(spec.config, "_name_or_path", None) or type(spec).__name__
        else:
            raise ValueError(f"{role}={spec!r} is not a model: pass a local HF folder, a GGUF file, a loaded "
                             f"fsgen_engine model, an HF model, or 'early_exit:N' (small only)")
        self.models[role] = model
        self.tokenizers[role] = tok

    def _record_copies(self, role: str, src: list[int], dst: list[int]) -> None:
        model = self.models[role]
        if isinstance(model, ShardedModel):
            model.record_copies(src, dst)

    def _new_seq_id(self) -> int:
        self._next_seq += 1
        return self._next_seq

    # ------------------------------------------------------------------ generate
    def generate(self, prompts, sampling: SamplingParams | None = None, *, method: str, router=None,
                 options: MethodOptions | None = None, max_new_tokens: int = 128, n: int = 1, stop=None,
                 ignore_eos: bool = False, chat: bool = False, trace_topk: int = 0, progress: bool = True,
                 **deprecated) -> list[GenerationOutput]:
        """Generate a continuation for each prompt with a collaboration method.

        prompts: list of strings (chat template applied when ``chat=True`` and the tokenizer has one) or
            token-id lists; a single string is accepted too.
        sampling: ``SamplingParams(temperature, top_k, top_p, min_p, seed)``, applied after fusion;
            None = greedy.
        method: ``large`` | ``small`` | ``oracle`` | ``contrastive`` | ``proxy`` | ``speculative`` | ``bild``.
        router: when System 2 is called (oracle / contrastive / proxy; bild's fallback rule):
            ``always`` | ``never`` | ``max_prob:T`` | ``margin:T`` | ``entropy:T`` | ``learned:PATH`` (aliases
            normal, none, threshold, delta_threshold). None = ``always`` (bild: ``max_prob:0.6``).
        options: ``MethodOptions`` (speculative K and target, fusion parameters, BiLD thresholds);
            None = the defaults.
        max_new_tokens: >= 1 (capped by the models' context). n: samples per prompt, 1..max_batch (with
            sampling they differ; greedy gives n equal copies); a prompt's KV is computed once and
            shared by its samples (copy on write).
        stop: a string, a token id, or a list of strings / token ids / token-id sequences; a stop string
            is removed from ``text``. ignore_eos: keep generating past EOS.
        trace_topk: K in [0, 1000]; > 0 records System 1's and System 2's top-K distributions per token in
            the trace (``TraceStep.small_topk_*`` / ``large_topk_*``; research records and top-K routers use
            100) at the cost of a softmax + top-K per model per step, copied with the step's one sync.
        progress: a progress bar on stderr.
        deprecated: the flat keywords of earlier releases (``temperature=``, ``num_draft_tokens=``, ...)
            still work for this release, with a ``DeprecationWarning``.

        Returns ``n`` :class:`GenerationOutput` per prompt, prompt-major (all samples of prompt 0, then
        prompt 1, ...; ``meta["sample"]`` numbers them when ``n > 1``). Every argument is validated
        before any state changes; pages are returned to the pool when the call ends, also on error.
        """
        sampling, options = resolve_legacy(sampling, options, deprecated)
        if self._tp is None:
            return self._generate(prompts, sampling, method, router, options, max_new_tokens, n, stop, ignore_eos,
                                  chat, trace_topk, progress)
        self._tp.check_open()
        if self._tp.rank != 0:   # torchrun rank > 0: serve rank 0's forwards of this call
            self._tp.serve(self._follower_models)
            return []
        try:
            return self._generate(prompts, sampling, method, router, options, max_new_tokens, n, stop, ignore_eos,
                                  chat, trace_topk, progress)
        finally:
            self._tp.end_generate()   # torchrun: the other ranks' generate returns (also after an error)

    def _generate(self, prompts, sampling, method, router, options, max_new_tokens, n, stop, ignore_eos, chat,
                  trace_topk, progress) -> list[GenerationOutput]:
        cfg = method_config(self.models, method=method, router=router, options=options, trace_topk=trace_topk)
        check_max_new_tokens(max_new_tokens)
        prompt_ids = tokenize_prompts(prompts, self.tokenizer, self.vocab_size, self.max_positions, chat)
        check_prompt_ids(prompt_ids, self._vocab, self.names)
        rules = StopRules(self.tokenizer, self.eos_ids, stop, ignore_eos)
        check_num_samples(n, self.max_batch)
        cfg.extra["eos_ids"] = sorted(rules.eos)   # speculative draft_stop: drafting ends at a drafted EOS
        algo = make_method(cfg, self.runner, Sampler(self.device, sampling))
        groups, needs = self._plan(prompt_ids, algo, int(max_new_tokens), n)
        t0 = time.perf_counter()
        self.scheduler.run(algo, Tracer(rules), groups, needs, progress=progress, desc=f"fsgen {cfg.method}")
        return self._outputs(prompts, groups, cfg, rules, time.perf_counter() - t0)

    def _plan(self, prompt_ids: list[list[int]], algo, max_new_tokens: int, n: int) -> tuple[list, list]:
        """One group of ``n`` rows per prompt and the KV pages each group may need in the worst case:
        per model, its tokens plus the method's lookahead plus ``ROW_SLACK_TOKENS``."""
        S = self.kv.page_size
        groups, needs = [], []
        for i, p in enumerate(prompt_ids):
            room = self.max_positions - len(p) - algo.lookahead
            if room < 1:
                raise ValueError(f"prompt #{i} has {len(p)} tokens; with the method's lookahead of "
                                 f"{algo.lookahead} it leaves no room in the context of {self.max_positions} "
                                 f"tokens (max_position_embeddings); shorten it")
            group = [Row(index=i, seq_id=-1, prompt=list(p), max_new=min(max_new_tokens, room)) for _ in range(n)]
            tokens = len(p) + group[0].max_new + algo.lookahead + ROW_SLACK_TOKENS
            need = n * len(algo.model_ids) * -(-tokens // S)
            if need > self.kv.num_pages:
                raise ValueError(f"prompt #{i} needs up to {need} KV pages ({len(p)} prompt + {group[0].max_new} new "
                                 f"tokens over {len(algo.model_ids)} models x {n} samples) but the pool has "
                                 f"{self.kv.num_pages}; raise kv_memory / FSGEN_KV_MEMORY or lower max_new_tokens")
            groups.append(group)
            needs.append(need)
        return groups, needs

    def _outputs(self, prompts, groups: list, cfg, rules: StopRules, wall: float) -> list[GenerationOutput]:
        """The finished rows as ``GenerationOutput`` (prompt-major; ``meta`` records the resolved options)."""
        outs = []
        router_name = cfg.router.name if cfg.method not in ("large", "small", "speculative") else ""
        plist = [prompts] if isinstance(prompts, str) else list(prompts)
        n = len(groups[0])
        meta = {k: v for k, v in (("target", cfg.target),
                                  ("num_draft_tokens", cfg.num_draft_tokens if cfg.method == "speculative" else None),
                                  ("fuse", cfg.fuse), ("alpha", cfg.alpha), ("beta", cfg.beta),
                                  ("trace_topk", cfg.trace_topk or None)) if v is not None}
        for r, sample in ((r, s) for g in groups for s, r in enumerate(g)):
            p = plist[r.index]
            st = r.stats
            st.total_tokens = r.num_generated
            st.wall_time_s = wall
            st.tokens_per_s = st.total_tokens / wall if wall > 0 else 0.0
            outs.append(GenerationOutput(
                token_ids=r.generated, text=r.final_text(rules), finish_reason=r.finish_reason or "length",
                stats=st, trace=r.trace, prompt=p if isinstance(p, str) else [int(t) for t in p],
                method=cfg.method, router=router_name, meta={**meta, **({"sample": sample} if n > 1 else {})}))
        return outs

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Stop the tensor-parallel workers (nothing to do for a single-process engine). Idempotent; also
        run by ``with Engine(...) as e:`` and when the engine is garbage-collected or the process exits."""
        if self._tp is not None:
            self._tp.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Engine(large={self.names.get('large')!r}, small={self.names.get('small')!r}, "
                f"small_ft={self.names.get('small_ft')!r}, device={self.device}, dtype={self.dtype}, "
                f"kv_pages={self.kv.num_pages}x{self.kv.page_size}"
                + (f", tensor_parallel={self._tp.size}" if self._tp is not None else "") + ")")

