"""Sliding-window attention (Mistral, Qwen2/Qwen3 with use_sliding_window) vs HF transformers, with prompts
longer than the window so the window changes the logits."""
from __future__ import annotations

import pytest
import torch

from fsgen_engine.models import load_model
from tests.models.conftest import VOCAB, make_hf
from tests.models.test_families import hf_logits, run_and_compare

# kind -> per-layer windows HF applies (Qwen: only layers >= max_window_layers slide)
WINDOWS = {"mistral_swa": [5, 5, 5], "qwen2_swa": [0, 4, 4], "qwen3_swa": [0, 0, 6]}


def _without_window(hf):
    """The same weights with every layer on full attention."""
    d = hf.config.to_dict()
    d.update(sliding_window=None, use_sliding_window=False)
    d.pop("layer_types", None)
    full = type(hf)(type(hf.config).from_dict(d)).eval()
    full.load_state_dict(hf.state_dict())
    return full


@pytest.fixture(scope="module", params=list(WINDOWS))
def swa(request, tmp_path_factory):
    hf = make_hf(request.param)
    d = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(d, safe_serialization=True)
    return request.param, hf, str(d)


def test_hf_applies_the_window(swa):
    """Guards the comparison below: HF (sdpa and eager alike) really masks with the window here."""
    kind, hf, _ = swa
    tokens = torch.randint(3, VOCAB, (16,), generator=torch.Generator().manual_seed(5)).tolist()
    sdpa = hf_logits(hf, tokens)
    hf.set_attn_implementation("eager")
    try:
        eager = hf_logits(hf, tokens)
    finally:
        hf.set_attn_implementation("sdpa")
    torch.testing.assert_close(sdpa, eager, atol=1e-4, rtol=1e-4)
    full = hf_logits(_without_window(hf), tokens)
    w = min(x for x in WINDOWS[kind] if x)
    torch.testing.assert_close(full[:w], eager[:w], atol=1e-4, rtol=1e-4)  # nothing to hide yet
    assert (full[w:] - eager[w:]).abs().max() > 1e-2


def test_config_records_per_layer_windows(swa):
    kind, _, folder = swa
    model, _ = load_model(folder, dtype="float32", device="cpu")
    assert model.config.layer_windows == WINDOWS[kind]
    assert model.config.sliding_window == max(WINDOWS[kind])
    assert [model.config.attn_window(i) for i in range(3)] == WINDOWS[kind]


def test_folder_matches_hf_past_the_window(swa):
    """Ragged prefill (prompts up to 3x the window), 3 decodes and a 4-token extend vs HF full recompute."""
    _, hf, folder = swa
    model, _ = load_model(folder, dtype="float32", device="cpu")
    run_and_compare(model, hf, seed=7, prompt_lens=(9, 14, 2))


def test_triton_backend_matches_hf(monkeypatch):
    """The same through the Triton kernel (interpreted on CPU), page size 4 < BLOCK_N so tiles span pages."""
    hf = make_hf("qwen2_swa", layers=3, seed=1)
    from fsgen_engine.models import from_hf_model
    from fsgen_engine.ops._dispatch import available_backends

    if "triton" not in available_backends(torch.device("cpu"), native=None, triton_kernel=True):
        pytest.skip("Triton is not available (not installed, or TRITON_INTERPRET unset)")
    monkeypatch.setenv("FSGEN_BACKEND", "triton")
    model = from_hf_model(hf, torch.float32, "cpu")
    run_and_compare(model, hf, seed=8, prompt_lens=(7, 11))


def test_non_sliding_configs_stay_full():
    """Qwen2 without use_sliding_window and Llama ignore a configured window, as HF does."""
    import transformers as T

    from fsgen_engine.models.config import ModelConfig

    q = T.Qwen2Config(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      sliding_window=4, max_window_layers=0)
    assert ModelConfig.from_hf(q, "llama").layer_windows == []
    llama = T.LlamaConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4)
    llama.sliding_window = 4
    cfg = ModelConfig.from_hf(llama, "llama")
    assert cfg.layer_windows == [] and cfg.sliding_window is None and cfg.attn_window(1) == 0
