"""Load-time and prompt-time checks of the models an engine collaborates with.

- :func:`load_model_checked`: ``load_model`` whose every failure on a bad file (truncated or corrupt
  safetensors, a file that is not GGUF, a GGUF with a broken header or cut short, an unreadable
  config) is a :class:`ModelLoadError` naming the model's role (large / small / small_ft), the file
  and what is wrong, instead of the parser's own exception.
- :func:`check_vocabularies`: the models must read the same ids: vocabularies may differ by a few
  padding rows only (``VOCAB_PADDING_ROWS``), and the tokenizer the engine encodes with must not
  produce ids a model has no row for (beyond that padding).
- :func:`check_prompt_ids`: every prompt id is inside the vocabulary of every model that reads it.
"""
from __future__ import annotations

import json
import os

# Checkpoints of one family pad their embedding to a multiple of 64/128/256 rows (Qwen2.5 0.5B: 151936,
# 7B: 152064); more than this apart, two models do not share a vocabulary.
VOCAB_PADDING_ROWS = 1024
GGUF_MAGIC = b"GGUF"


class ModelLoadError(ValueError):
    """A model file that cannot be used; the message names the role, the file and the problem."""


def _size(path: str) -> str:
    try:
        return f"{os.path.getsize(path):,} bytes"
    except OSError:
        return "size unknown"


def _diagnose_gguf(path: str, exc: BaseException) -> str:
    with open(path, "rb") as f:
        head = f.read(8)
    if not head.startswith(GGUF_MAGIC):
        return (f"is not a GGUF file: it starts with {head[:4]!r}, a GGUF file starts with {GGUF_MAGIC!r} "
                f"({_size(path)}); re-download or re-convert it")
    return (f"is a corrupt or truncated GGUF file ({_size(path)}): reading it failed with "
            f"{type(exc).__name__}: {exc}; re-download or re-convert it")


def _diagnose_folder(path: str, exc: BaseException) -> str:
    cfg = os.path.join(path, "config.json")
    if os.path.exists(cfg):
        try:
            with open(cfg, encoding="utf-8") as f:
                json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            return f"{cfg} is not valid JSON ({e})"
    try:
        from safetensors import safe_open
    except ImportError:  # pragma: no cover - safetensors is a requirement
        safe_open = None
    if safe_open is not None:
        for name in sorted(os.listdir(path)):
            if name.endswith(".safetensors"):
                full = os.path.join(path, name)
                try:
                    with safe_open(full, framework="pt") as f:
                        for k in f.keys():
                            f.get_slice(k)
                except Exception as e:  # noqa: BLE001 - any parser failure is a corrupt file
                    return (f"{full} is a corrupt or truncated safetensors file ({_size(full)}): {e}; "
                            "re-download it or save the model again")
    return f"cannot be loaded: {type(exc).__name__}: {exc}"


def _raised_by_us(exc: BaseException) -> bool:
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last, tb = tb.tb_frame.f_code.co_filename, tb.tb_next
    return last is not None and os.sep + "fsgen_engine" + os.sep in last


def load_model_checked(role: str, path: str, *, dtype, device, tp=None, tokenizer: bool = True):
    """``fsgen_engine.models.load_model(path)`` for the engine's ``role``; raises :class:`ModelLoadError`
    naming the role and the file for every failure caused by the files themselves. ``tp``: load that
    tensor-parallel rank's shard only."""
    from fsgen_engine import models as M

    try:
        return M.load_model(path, dtype=dtype, device=device, tp=tp, tokenizer=tokenizer)
    except ModelLoadError:
        raise
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - parsers raise anything (IndexError, SafetensorError, ...)
        if isinstance(exc, (ValueError, FileNotFoundError)) and _raised_by_us(exc):
            raise ModelLoadError(f"{role} model: {exc}") from exc  # already says which file and why
        if os.path.isfile(path) and path.endswith(".gguf"):
            what = _diagnose_gguf(path, exc)
        elif os.path.isdir(path):
            what = _diagnose_folder(path, exc)
        else:
            what = f"cannot be loaded: {exc}"
        raise ModelLoadError(f"{role} model {path} {what}") from exc


def _tokenizer_size(tok) -> int | None:
    try:
        return len(tok)
    except TypeError:
        v = getattr(tok, "vocab_size", None)
        return int(v) if v is not None else None


def check_vocabularies(vocab: dict, names: dict, tokenizers: dict, tokenizer) -> None:
    """Raise :class:`ModelLoadError` unless the models can read one another's ids.

    ``vocab``: role -> number of vocabulary rows; ``names``: role -> path/name; ``tokenizers``: role ->
    tokenizer or None; ``tokenizer``: the one prompts are encoded with."""
    roles = list(vocab)
    for i, a in enumerate(roles):
        for b in roles[i + 1:]:
            if tokenizers.get(a) is not None and tokenizers.get(b) is not None:
                continue  # compared id by id by check_tokenizers; padding rows past either are fine
            gap = abs(vocab[a] - vocab[b])
            if gap > VOCAB_PADDING_ROWS:
                raise ModelLoadError(
                    f"vocabulary mismatch: the {a} model {names[a]} has {vocab[a]} token ids and the {b} model "
                    f"{names[b]} has {vocab[b]} ({gap} apart, more than the {VOCAB_PADDING_ROWS} padding rows "
                    f"allowed) and {'neither has' if tokenizers.get(a) is None and tokenizers.get(b) is None else 'one has no'} "
                    "tokenizer to show they share one; collaborative decoding needs models of one tokenizer family")
    if tokenizer is None:
        return
    n = _tokenizer_size(tokenizer)
    if n is None:
        return
    for r in roles:
        if n > vocab[r] + VOCAB_PADDING_ROWS:
            raise ModelLoadError(
                f"vocabulary mismatch: the tokenizer has {n} token ids but the {r} model {names[r]} has only "
                f"{vocab[r]} rows: prompts would contain ids it cannot read; use models of one tokenizer family")


def check_prompt_ids(prompt_ids, vocab: dict, names: dict) -> None:
    """Raise ValueError unless every id of every prompt is a row of every model (role -> rows in ``vocab``)."""
    for i, ids in enumerate(prompt_ids):
        top = max(ids) if ids else -1
        for r, v in vocab.items():
            if top >= v:
                raise ValueError(f"prompt #{i} has token id {top}, outside the vocabulary of the {r} model "
                                 f"{names.get(r, r)} ({v} ids); the tokenizer produces ids this model cannot read")
