"""Our paged forward vs HF transformers for every family: ragged prefill, decode, K+1 extend, early exit."""
from __future__ import annotations

import pytest
import torch

from fsgen_engine.models import from_hf_model, load_model
from tests.models._paged import PagedSeqs
from tests.models.conftest import VOCAB, make_hf

ATOL = 1e-4


def hf_logits(hf, tokens: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return hf(torch.tensor([tokens])).logits[0].float()


def run_and_compare(model, hf, seed: int = 0, prompt_lens=(5, 11, 1)):
    """Prefill (all rows), 3 decode steps, then a 4-token extend (all rows) vs HF full recompute."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda n: torch.randint(3, VOCAB, (n,), generator=g).tolist()  # noqa: E731
    ps = PagedSeqs(model, num_pages=48, page_size=4, seed=seed)
    prompts = {s: rand(n) for s, n in enumerate(prompt_lens)}
    got = ps.step(prompts, logits="all")
    want = torch.cat([hf_logits(hf, p) for p in prompts.values()])
    torch.testing.assert_close(got, want, atol=ATOL, rtol=1e-4)
    for _ in range(3):
        got = ps.step({s: rand(1) for s in prompts})
        want = torch.stack([hf_logits(hf, ps.tokens[s])[-1] for s in prompts])
        torch.testing.assert_close(got, want, atol=ATOL, rtol=1e-4)
    got = ps.step({s: rand(4) for s in prompts}, logits="all")
    want = torch.cat([hf_logits(hf, ps.tokens[s])[-4:] for s in prompts])
    torch.testing.assert_close(got, want, atol=ATOL, rtol=1e-4)


def test_folder_matches_hf(saved):
    kind, hf, folder = saved
    model, tok = load_model(folder, dtype="float32", device="cpu")
    assert tok is None
    assert model.num_layers == hf.config.num_hidden_layers and model.vocab_size == VOCAB
    assert model.kv_spec.num_layers == model.num_layers and model.kv_spec.head_dim == 64
    assert 2 in model.eos_token_ids
    run_and_compare(model, hf)


def test_early_exit_matches_truncated_hf(saved):
    kind, hf, folder = saved
    model = from_hf_model(hf, torch.float32, "cpu")
    small = model.early_exit(2)
    assert small.num_layers == 2 and model.num_layers == 3 and small.kv_spec.num_layers == 2
    assert small.weights["layers"][0]["ln1"].data_ptr() == model.weights["layers"][0]["ln1"].data_ptr()
    cfg = type(hf.config).from_dict(hf.config.to_dict())
    cfg.num_hidden_layers = 2
    hf_small = type(hf)(cfg).eval()
    missing, _ = hf_small.load_state_dict(hf.state_dict(), strict=False)
    assert not [k for k in missing if "rotary" not in k]
    run_and_compare(small, hf_small, seed=1, prompt_lens=(3, 7))


def test_from_hf_model_shares_weights():
    hf = make_hf("qwen2", layers=2)
    model = from_hf_model(hf, torch.float32, "cpu")
    assert model.weights["layers"][1]["wq"].data_ptr() == hf.model.layers[1].self_attn.q_proj.weight.data_ptr()
    assert model.config.qkv_bias and model.weights["layers"][0]["bq"] is not None
    run_and_compare(model, hf, seed=2, prompt_lens=(6, 2))


def test_sharded_safetensors(tmp_path):
    hf = make_hf("llama", layers=2, seed=3)
    hf.save_pretrained(tmp_path, safe_serialization=True, max_shard_size="100KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    model, _ = load_model(str(tmp_path), dtype="float32", device="cpu")
    run_and_compare(model, hf, seed=3, prompt_lens=(4, 9))


def test_bf16_cast_close(tmp_path):
    hf = make_hf("qwen3", layers=2, seed=4)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    model, _ = load_model(str(tmp_path), dtype="bfloat16", device="cpu")
    assert model.dtype == torch.bfloat16 and model.weights["embed"].dtype == torch.bfloat16
    ps = PagedSeqs(model, page_size=4)
    got = ps.step({0: [5, 6, 7, 8, 9, 10]}, logits="all")
    assert got.dtype == torch.float32
    want = hf_logits(hf, [5, 6, 7, 8, 9, 10])
    assert (got - want).abs().max() < 0.1 * want.abs().max() + 0.05


def test_missing_path_and_unsupported(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope.*local HF model folder.*\.gguf"):
        load_model(str(tmp_path / "nope"))
    import transformers as T

    cfg = T.GPT2Config(n_embd=64, n_layer=1, n_head=4, vocab_size=50)
    T.GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "gpt2", safe_serialization=True)
    with pytest.raises(ValueError, match="unsupported model.*GPT2LMHeadModel.*supported: .*LlamaForCausalLM"):
        load_model(str(tmp_path / "gpt2"))
    with pytest.raises(ValueError, match="early_exit"):
        from_hf_model(make_hf("llama", layers=2)).early_exit(3)
