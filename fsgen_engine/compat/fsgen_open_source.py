"""Drop-in for the research code's ``FSGenOpenSource`` class, running on the engine.

``FSGenOpenSource(large_model, small_model, tokenizer, small_ft_model=None)`` takes HF transformers
models (``PreTrainedModel``); ``generate_text(input_ids, max_tokens, collabrate_method, router_method,
temperature, stop_word_ids)`` returns the research per-sample dict (methods doc section 5):

``text`` (continuation, special tokens skipped), ``tokens`` (each token decoded), ``topK`` (100),
``slm_logits_prob`` (per step ``[[top-100 probs]], [top-100 ids]`` of System 1: the small model, or
the small fine-tuned one for proxy tuning), ``llm_logits_prob`` (same for the large model, fired
steps only), ``if_match_now`` (per fired step, 1 = mismatch), ``total_tokens_num``,
``latent_tokens_num``, ``mismatch_tokens_num``. Speculative decoding returns ``text``, ``tokens`` and
the three counts, as the research code does.

How it runs: the HF models are converted once (``fsgen_engine.models.from_hf_model``, sharing weights
where possible) into an ``Engine``, which produces the tokens, the counts and the per-token trace.
For oracle and contrastive decoding the engine also records the top-100 distributions in its trace
(``trace_topk=100``). Otherwise (proxy tuning, models whose vocabularies differ, the ``hf`` backend)
they are recomputed with one teacher-forced forward of the HF models over prompt + continuation
(position ``T-1+i`` gives step ``i``'s logits, exactly what the incremental loop saw up to float
rounding). Proxy tuning's mismatch reference, the small *base* model's argmax, comes from that pass
too (FS-GEN's definition).

Reproduces the research code by default: its decoding is always greedy whatever ``temperature`` says
(``logits_gen.py`` passes ``temperature=0.7`` everywhere, and the paper's figures come from those greedy
runs), so ``temperature`` is ignored too, with a warning the first time a non-zero one is passed. To
sample with ``temperature`` instead, opt in with ``research_greedy=False``. Learned routers
(``{"method": "svm", "trained_model_path": ...}``) are read as data-only JSON files; the research code's
pickled ``.pkl`` needs ``allow_pickle_router=True`` (it can run code; warns).

Differences from the research code, on purpose: ``stop_word_ids`` is not mutated. Speculative decoding stops at
``max_tokens`` and at an EOS anywhere in a round (the research loop could overshoot by up to K and only
checked EOS on the round's last token).
"""
from __future__ import annotations

from typing import Sequence

import torch

from .names import parse_method, parse_router

TOPK = 100


def _prompt_ids(input_ids) -> list[int]:
    if isinstance(input_ids, torch.Tensor):
        if input_ids.dim() == 2:
            if input_ids.shape[0] != 1:
                raise ValueError(f"input_ids has batch size {input_ids.shape[0]}; FSGenOpenSource.generate_text "
                                 "takes one sample ([1, T]); use Engine.generate for batches")
            input_ids = input_ids[0]
        if input_ids.dim() != 1:
            raise ValueError(f"input_ids must be [1, T] or [T], got shape {tuple(input_ids.shape)}")
        return [int(x) for x in input_ids.tolist()]
    ids = list(input_ids)
    if ids and isinstance(ids[0], (list, tuple)):
        if len(ids) != 1:
            raise ValueError(f"input_ids has {len(ids)} rows; generate_text takes one sample")
        ids = list(ids[0])
    if not ids:
        raise ValueError("input_ids is empty: give at least one prompt token")
    return [int(x) for x in ids]


def _first_stop(prompt: list[int], out: list[int], stops: list[list[int]]) -> int | None:
    """Number of tokens kept when a stop sequence ends inside ``out`` (checked over prompt + out, as
    the research ``KeyWordsCriteria``), else None."""
    seq = prompt + out
    for i in range(len(out)):
        end = len(prompt) + i + 1
        if any(s and end >= len(s) and seq[end - len(s):end] == s for s in stops):
            return i + 1
    return None


def _eos_ids(tokenizer, model) -> list[int]:
    ids = []
    for v in (getattr(tokenizer, "eos_token_id", None),
              getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        for x in (v if isinstance(v, (list, tuple)) else [v]):
            if x is not None and int(x) not in ids:
                ids.append(int(x))
    return ids


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _step_logits(model, prompt: list[int], out: list[int]) -> torch.Tensor:
    """``[len(out), V]`` float32: the logits each generation step saw (teacher-forced)."""
    n = len(out)
    if n == 0:
        return torch.zeros(0, 0)
    x = torch.tensor([prompt + out[:-1]], device=_device_of(model))
    try:
        logits = model(input_ids=x, logits_to_keep=n).logits[0]
    except TypeError:  # older transformers: no logits_to_keep
        logits = model(input_ids=x).logits[0, -n:]
    return logits.to(torch.float32)


def _topk_entries(logits: torch.Tensor, k: int = TOPK) -> list:
    """Research layout per row: ``[[[p_1..p_k]], [id_1..id_k]]``."""
    if logits.numel() == 0:
        return []
    probs = torch.softmax(logits, dim=-1).topk(min(k, logits.shape[-1]), dim=-1)
    return [[[p], i] for p, i in zip(probs.values.tolist(), probs.indices.tolist())]


class FSGenOpenSource:
    """The research API over the engine. Extra keywords (not in the research code):

    backend: ``"engine"`` (default) or ``"hf"`` (plain HF full-recompute loop, for checking).
    device, dtype: where/how the engine holds the converted models (default: the large model's).
    engine: an ``Engine`` to use instead of converting the models.
    record_distributions: fill ``slm_logits_prob`` / ``llm_logits_prob`` (engine backend, oracle and
        contrastive: from the engine's top-100 trace; otherwise one extra forward per model).
    research_greedy: True (default): ignore ``temperature`` and decode greedily, as the research code
        did (warns once when a non-zero temperature is ignored); False: sample with ``temperature``.
    allow_pickle_router: let a learned router be a pickle (the research code's ``.pkl``): runs code.
    engine_kwargs: passed to ``Engine`` (kv_memory, max_batch, page_size).
    """

    def __init__(self, large_model, small_model, tokenizer, small_ft_model=None, *, backend: str = "engine",
                 device=None, dtype=None, engine=None, record_distributions: bool = True,
                 research_greedy: bool = True, allow_pickle_router: bool = False, **engine_kwargs):
        if backend not in ("engine", "hf"):
            raise ValueError(f"backend={backend!r} must be 'engine' or 'hf'")
        self.large_model = large_model
        self.small_model = small_model
        self.small_ft_model = small_ft_model
        self.tokenizer = tokenizer
        self.backend = backend
        self.device = device
        self.dtype = dtype
        self._engine = engine
        self.record_distributions = record_distributions
        self.research_greedy = bool(research_greedy)
        self.allow_pickle_router = bool(allow_pickle_router)
        self._warned_temperature = False
        self.engine_kwargs = engine_kwargs
        self.last_output = None  # the engine GenerationOutput of the latest call (trace, stats)

    # -- engine ---------------------------------------------------------------------------------
    @property
    def engine(self):
        if self._engine is None:
            from fsgen_engine.engine import Engine
            from fsgen_engine.models import from_hf_model

            device = self.device if self.device is not None else _device_of(self.large_model)
            dtype = self.dtype if self.dtype is not None else next(self.large_model.parameters()).dtype
            conv = [from_hf_model(m, dtype, device) if m is not None else None
                    for m in (self.large_model, self.small_model, self.small_ft_model)]
            self._engine = Engine(conv[0], conv[1], conv[2], device=str(device), dtype=dtype, **self.engine_kwargs)
        return self._engine

    def _run(self, prompt, spec, router, max_tokens, stops, temperature, seed):
        if self.backend == "hf":
            from .hf_backend import hf_generate

            learned = None
            if router.startswith("learned:"):
                from fsgen_engine.router_format import load_router

                learned = load_router(router.split(":", 1)[1], allow_pickle=self.allow_pickle_router)
            return hf_generate(self.large_model, self.small_model, self.small_ft_model, prompt, method=spec.method,
                               router=router, max_new_tokens=max_tokens, stop_ids=stops, temperature=temperature,
                               seed=seed, learned=learned, **spec.kwargs)
        from fsgen_engine.generate_args import generate_kwargs

        kw = dict(spec.kwargs)
        if self._distributions_from_trace(spec):
            kw["trace_topk"] = TOPK
        outs = self.engine.generate([prompt], method=spec.method, router=self._router_arg(router),
                                    max_new_tokens=max_tokens, stop=None, ignore_eos=True,
                                    **generate_kwargs(temperature=temperature, seed=seed, **kw))
        return outs[0]

    def _distributions_from_trace(self, spec) -> bool:
        """Whether the engine's trace gives the research distributions directly (no recompute): the
        engine backend, oracle/contrastive (proxy's mismatch flags need the base model's argmax, which
        the trace does not keep), and models with one vocabulary (the trace covers the shared ids only)."""
        if self.backend != "engine" or not self.record_distributions or spec.method not in ("oracle", "contrastive"):
            return False
        return self._vocab(self.large_model) == self._vocab(self.small_model)

    def _temperature(self, temperature) -> float:
        if temperature is None:
            return 0.0
        t = float(temperature)
        if not self.research_greedy:
            return t
        if t != 0.0 and not self._warned_temperature:
            import warnings

            warnings.warn(f"FSGenOpenSource: temperature={t:g} is ignored and decoding is greedy, as in the research "
                          "code (whose figures come from greedy runs); pass research_greedy=False to sample with "
                          "it", UserWarning, stacklevel=3)
            self._warned_temperature = True
        return 0.0

    def _router_arg(self, router: str):
        """The engine's router argument: a data-only learned router unless pickles are allowed."""
        if router.startswith("learned:") and self.allow_pickle_router:
            from fsgen_engine.routers import LearnedRouter

            return LearnedRouter(router.split(":", 1)[1], allow_pickle=True)
        return router

    # -- the research API -----------------------------------------------------------------------
    def generate_text(self, input_ids, max_tokens: int = 50, collabrate_method=None, router_method=None,
                      temperature: float = 0.0, stop_word_ids: Sequence[Sequence[int]] | None = None, *,
                      seed: int | None = None) -> dict:
        spec = parse_method(collabrate_method or {"method": "OracleDecoding"})
        research_router, router = parse_router(router_method or {"method": "normal"})
        if spec.method == "proxy" and self.small_ft_model is None:
            raise ValueError("ProxyFineTuning needs small_ft_model: FSGenOpenSource(large, small, tokenizer, "
                             "small_ft_model=...)")
        if int(max_tokens) < 1:
            raise ValueError(f"max_tokens={max_tokens} must be at least 1")
        temperature = self._temperature(temperature)
        prompt = _prompt_ids(input_ids)
        stops = [[int(t) for t in s] for s in (stop_word_ids or []) if len(s)]
        stops += [[e] for e in _eos_ids(self.tokenizer, self.small_model)]

        out = self._run(prompt, spec, router, int(max_tokens), stops, temperature, seed)
        self.last_output = out
        tokens = list(out.token_ids)
        cut = _first_stop(prompt, tokens, stops)
        n = cut if cut is not None else len(tokens)
        cols = out.trace.columns
        routed = [bool(r) for r in cols["routed"][:n]]

        if spec.method == "speculative":
            total, latent, mism = self._speculative_counts(out, n, spec.kwargs["num_draft_tokens"])
        else:
            total, latent = n, sum(routed)
            flags = [int(t != s) for r, t, s in zip(routed, tokens[:n], cols["small_argmax"][:n]) if r]

        rec = {"text": self.tokenizer.decode(tokens[:n], skip_special_tokens=True),
               "tokens": [self.tokenizer.decode([t], skip_special_tokens=False) for t in tokens[:n]]}
        if spec.method == "speculative":
            rec.update(total_tokens_num=total, latent_tokens_num=latent, mismatch_tokens_num=mism)
            return rec

        slm_probs, llm_probs = [], []
        need_base = spec.method == "proxy" and any(routed)
        if self._distributions_from_trace(spec) and out.trace.has_topk:
            slm_probs = [[[p], i] for p, i in zip(cols["small_topk_probs"][:n], cols["small_topk_ids"][:n])]
            if any(routed):  # the large model's columns exist once it ran
                llm_probs = [[[p], i] for r, p, i in zip(routed, cols["large_topk_probs"][:n],
                                                         cols["large_topk_ids"][:n]) if r]
        elif self.record_distributions or need_base:
            fired = [i for i, r in enumerate(routed) if r]
            if self.record_distributions:
                sys1 = self.small_ft_model if spec.method == "proxy" else self.small_model
                slm_probs = _topk_entries(_step_logits(sys1, prompt, tokens[:n]))
            if fired and (self.record_distributions or need_base):
                z_l = _step_logits(self.large_model, prompt, tokens[:n])[fired]
                if need_base:
                    z_b = _step_logits(self.small_model, prompt, tokens[:n])[fired]
                    v = min(z_l.shape[-1], z_b.shape[-1], self._vocab(self.small_ft_model))
                    z_l = z_l[:, :v]
                    ref = z_b[:, :v].argmax(-1).tolist()  # FS-GEN: mismatch against the small base argmax
                    flags = [int(tokens[i] != r) for i, r in zip(fired, ref)]
                elif spec.method == "contrastive":
                    z_l = z_l[:, :min(z_l.shape[-1], self._vocab(self.small_model))]
                if self.record_distributions:
                    llm_probs = _topk_entries(z_l)
        rec.update(topK=TOPK, slm_logits_prob=slm_probs, llm_logits_prob=llm_probs, if_match_now=flags,
                   total_tokens_num=total, latent_tokens_num=latent, mismatch_tokens_num=sum(flags))
        return {k: rec[k] for k in ("text", "topK", "tokens", "slm_logits_prob", "llm_logits_prob",
                                    "if_match_now", "total_tokens_num", "latent_tokens_num",
                                    "mismatch_tokens_num")}

    @staticmethod
    def _vocab(model) -> int:
        if model is None:
            return 1 << 62
        emb = model.get_output_embeddings()
        return int(emb.weight.shape[0]) if emb is not None else int(model.config.vocab_size)

    @staticmethod
    def _speculative_counts(out, n: int, k: int) -> tuple[int, int, int]:
        """(total, verification rounds, rejected drafts) over the first ``n`` tokens. Each round ends with
        one System-2 token: a correction (a rejected draft) or, after every draft passed, a bonus."""
        st = out.stats
        if n == len(out.token_ids):
            return n, st.large_calls, st.mismatches
        src = out.trace.columns["source"][:n]
        rounds = mism = run = 0
        for s in src:
            if s == "draft":
                run += 1
                continue
            rounds += 1
            mism += int(run < k)  # a bonus follows K accepted drafts
            run = 0
        return n, rounds + int(run > 0), mism
