"""HF transformers baselines: plain ``generate`` (static KV cache where supported) and assisted generation.

Both run with greedy decoding on left-padded batches of token-id prompts.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch


def load_hf_model(path: str | Path, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """(model, tokenizer or None) for an HF folder or a ``.gguf`` file.

    GGUF goes through ``AutoModelForCausalLM.from_pretrained(dir, gguf_file=name)``; that needs the
    ``accelerate`` package, so without it the same dequantized tensors are loaded by hand
    (``load_gguf_checkpoint``) into a model built from the GGUF's config.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if path.suffix == ".gguf":
        d, name = str(path.parent), path.name
        tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
        try:
            model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=dtype)
        except ValueError as exc:
            if "accelerate" not in str(exc):
                raise
            model = _load_gguf_by_hand(path, dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
        try:
            tok = AutoTokenizer.from_pretrained(str(path))
        except Exception:
            tok = None
    model.to(device).eval()
    return model, tok


def _load_gguf_by_hand(path: Path, dtype: torch.dtype):
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    cfg = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]
    result = model.load_state_dict({k: v.to(dtype) for k, v in tensors.items()}, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("lm_head")]
    if missing:
        raise RuntimeError(f"GGUF {path} is missing weights for {missing[:5]}")
    model.tie_weights()
    return model


def _batch(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask."""
    n = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), n), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, n - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, n - len(p):] = 1
    return ids.to(device), mask.to(device)


def _sync(model) -> None:
    if next(model.parameters()).device.type == "cuda":
        torch.cuda.synchronize()


def _count_new(out: torch.Tensor, prompt_len: int, eos_ids: set[int] | None) -> list[list[int]]:
    rows = []
    for r in out[:, prompt_len:].tolist():
        if eos_ids:
            for j, t in enumerate(r):
                if t in eos_ids:
                    r = r[: j + 1]
                    break
        rows.append(r)
    return rows


class HFGenerate:
    """``model.generate`` greedy; ``cache="static"`` tries the static cache and falls back to dynamic."""

    def __init__(self, model, *, cache: str = "static", assistant_model=None, assistant_early_exit: int | None = None):
        self.model = model
        self.assistant_model = assistant_model
        self.assistant_early_exit = assistant_early_exit
        self.assisted = assistant_model is not None or assistant_early_exit is not None
        # Assisted generation does not take a static cache; it keeps its own dynamic one.
        self.cache = None if self.assisted else (cache if cache != "dynamic" else None)
        self.note = ""

    def __call__(self, prompts: list[list[int]], max_new_tokens: int, *, ignore_eos: bool = True,
                 eos_ids: set[int] | None = None) -> tuple[list[list[int]], float]:
        """Generate; returns (new token ids per prompt, seconds). Assisted runs one prompt at a time
        (HF assisted generation supports batch size 1 only)."""
        if self.assisted and len(prompts) > 1:
            rows, total = [], 0.0
            for p in prompts:
                r, t = self([p], max_new_tokens, ignore_eos=ignore_eos, eos_ids=eos_ids)
                rows += r
                total += t
            self.note = "HF assisted generation supports batch 1 only: the batch runs as sequential calls"
            return rows, total
        device = next(self.model.parameters()).device
        pad = self.model.config.pad_token_id
        pad = 0 if pad is None else (pad[0] if isinstance(pad, list) else pad)
        ids, mask = _batch(prompts, pad, device)
        kw = dict(max_new_tokens=max_new_tokens, do_sample=False, attention_mask=mask, pad_token_id=pad)
        if ignore_eos:
            kw["min_new_tokens"] = max_new_tokens
        if self.assistant_model is not None:
            kw["assistant_model"] = self.assistant_model
        if self.assistant_early_exit is not None:
            kw["assistant_early_exit"] = self.assistant_early_exit
        if self.cache:
            kw["cache_implementation"] = self.cache
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # deprecation chatter of generate() kwargs
        try:
            return self._generate(ids, kw, prompts, max_new_tokens, ignore_eos, eos_ids)
        finally:
            hf_logging.set_verbosity(verbosity)

    def _generate(self, ids, kw, prompts, max_new_tokens, ignore_eos, eos_ids):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _sync(self.model)
            t0 = time.perf_counter()
            try:
                with torch.inference_mode():
                    out = self.model.generate(ids, **kw)
            except Exception as exc:  # static cache not supported by this model / version
                if not self.cache:
                    raise
                self.note = f"static cache unavailable ({type(exc).__name__}: {str(exc)[:80]}); dynamic cache used"
                self.cache = None
                return self(prompts, max_new_tokens, ignore_eos=ignore_eos, eos_ids=eos_ids)
            _sync(self.model)
            dt = time.perf_counter() - t0
        return _count_new(out, ids.shape[1], None if ignore_eos else eos_ids), dt
