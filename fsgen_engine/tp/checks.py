"""Which of an engine's models run sharded, checked from the arguments and the configs alone, so a bad
tensor-parallel setting fails before any process starts or any weight is read."""
from __future__ import annotations

import os

from fsgen_engine.models.tensor_parallel import check_geometry


def _size(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be an integer >= 1 (number of tensor-parallel ranks)")
    return value


def sharded_roles(specs: dict, tensor_parallel, small_tensor_parallel) -> list[str]:
    """The roles that run sharded over ``tensor_parallel`` ranks ([] for a single-process engine).

    ``specs``: ``{role: model argument}``. System 2 (``large``) is sharded when ``tensor_parallel > 1``;
    System 1 (``small``, ``small_ft``) runs whole on rank 0 at ``small_tensor_parallel=1`` or sharded
    like System 2 at ``small_tensor_parallel=tensor_parallel``.
    """
    tp = _size("tensor_parallel", tensor_parallel)
    small_tp = _size("small_tensor_parallel", small_tensor_parallel)
    if small_tp not in (1, tp):
        raise ValueError(f"small_tensor_parallel={small_tp} with tensor_parallel={tp}: System 1 runs either whole on "
                         f"rank 0 (1, the default: its many small steps pay no communication) or on the same "
                         f"ranks as System 2 ({tp})")
    if tp == 1:
        return []
    roles = ["large"] + ([r for r in specs if r != "large"] if small_tp == tp else [])
    for role, spec in specs.items():
        if isinstance(spec, str) and spec.startswith("early_exit:"):
            if role not in roles:
                raise ValueError(f"{role}={spec!r} shares the large model's weights, which are sharded over "
                                 f"tensor_parallel={tp} ranks, so it cannot run whole at small_tensor_parallel=1; "
                                 f"pass small_tensor_parallel={tp} (it then runs on the large model's shards)")
            continue
        if role in roles and not isinstance(spec, (str, os.PathLike)):
            raise ValueError(f"{role}={type(spec).__name__} object with tensor_parallel={tp}: each rank loads its own "
                             f"shard from the files, so pass the model as a local HF folder or a GGUF path")
    for role in roles:
        spec = specs[role]
        if isinstance(spec, str) and spec.startswith("early_exit:"):
            continue
        path = os.fspath(spec)
        if not os.path.exists(path):
            raise ValueError(f"{role}={path!r}: no such model folder or GGUF file")
        try:
            cfg = _config(path)
        except Exception as exc:  # noqa: BLE001 - any parser error becomes one message naming the file
            from fsgen_engine.models.checks import ModelLoadError

            raise ModelLoadError(f"{role} model {path}: its config cannot be read ({type(exc).__name__}: {exc})") from exc
        check_geometry(f"{role} model {path}", cfg.num_heads, cfg.num_kv_heads, cfg.vocab_size,
                       cfg.intermediate_size, tp)
    return roles


def tp_engine_kwargs(small, tp: int | None, small_tp: int | None) -> dict:
    """``Engine`` keywords of the CLI's ``--tp N [--small-tp M]``: System 1 whole on rank 0 by default,
    except an ``early_exit:N`` draft, which runs on the large model's shards."""
    if tp is None and small_tp is None:
        return {}
    tp = 1 if tp is None else tp
    if small_tp is None:
        small_tp = tp if str(small).startswith("early_exit:") else 1
    return {"tensor_parallel": tp, "small_tensor_parallel": small_tp}


def _config(path: str):
    """The ``ModelConfig`` of a model folder or GGUF file (no weights read)."""
    from fsgen_engine.models.registry import resolve

    if os.path.isdir(path):
        from transformers import AutoConfig

        hf = AutoConfig.from_pretrained(path, local_files_only=True)
    else:
        from fsgen_engine.models.gguf_loader import load_gguf_config

        hf = load_gguf_config(path)
    return resolve(hf, path)[1]
