"""The tokens/s harness on tiny random models (1 run), and the bandwidth formula by hand."""
import json

import pytest

from fsgen_engine.benchmark.bandwidth import (
    ModelShape, achieved_bandwidth, bytes_per_step, kv_bytes_per_token, shape_from_hf_config,
)


def test_kv_bytes_per_token_hand_computed():
    # 2 (K,V) * 30 layers * 3 kv heads * 64 dims * 4 bytes
    assert kv_bytes_per_token(30, 3, 64, 4) == 2 * 30 * 3 * 64 * 4 == 46080


def test_bandwidth_formula_hand_computed():
    # weights 1000 B, KV 10 B/token, batch 4, context 50: 1000 + 4*50*10 = 3000 B per step
    step = bytes_per_step(1000, 10, 4, 50)
    assert step == 3000.0
    # two models: 3000 B x 20 steps + 500 B x 40 steps in 2 s = (60000 + 20000) / 2
    assert achieved_bandwidth([(step, 20), (500.0, 40)], 2.0) == 40000.0
    shape = ModelShape(num_layers=2, num_kv_heads=1, head_dim=4, weight_params=100, dtype_bytes=2)
    assert shape.weight_bytes == 200 and shape.kv_bytes_token == 2 * 2 * 1 * 4 * 2
    assert shape.step_bytes(3, 10) == 200 + 3 * 10 * 32


def test_bandwidth_rejects_bad_input():
    with pytest.raises(ValueError, match="seconds"):
        achieved_bandwidth([(1.0, 1)], 0.0)
    with pytest.raises(ValueError, match="batch"):
        bytes_per_step(1, 1, 0, 1)
    with pytest.raises(ValueError, match="num_kv_heads"):
        kv_bytes_per_token(2, 0, 4, 2)


def test_weight_params_match_hf_parameter_count():
    from transformers import AutoModelForCausalLM

    from fsgen_engine.benchmark.configs import hf_config

    for name in ("tiny-llama-a", "tiny-llama-b", "tiny-qwen2"):
        cfg = hf_config(name)
        model = AutoModelForCausalLM.from_config(cfg)
        params = {id(p): p.numel() for p in model.parameters()}
        total = sum(params.values())
        # untied models: the input embedding is a gather, not a full read
        expect = total - (0 if cfg.tie_word_embeddings else cfg.vocab_size * cfg.hidden_size)
        assert shape_from_hf_config(cfg, 4).weight_params == expect, name
        early = shape_from_hf_config(cfg, 4, num_layers=1)
        assert early.num_layers == 1 and early.weight_params < expect


@pytest.mark.slow
def test_harness_json_on_tiny_random_models(tmp_path):
    from fsgen_engine.cli import main

    rc = main(["bench", "--models", "tiny-llama-a+tiny-llama-b", "tiny-qwen2+early_exit:1",
               "--batch-sizes", "1", "2", "--max-new-tokens", "4", "--runs", "1", "--prompt-len", "8",
               "--methods", "speculative", "oracle@max_prob:0.5",
               "--results-dir", str(tmp_path), "--tag", "tiny"])
    doc = json.loads((tmp_path / "e2e_tiny.json").read_text())
    assert (tmp_path / "e2e_tiny.md").exists() and (tmp_path / "e2e_tiny.png").exists()
    for key in ("device", "device_name", "torch", "triton", "transformers", "git_commit", "command"):
        assert key in doc["env"]
    assert "bench" in doc["env"]["command"] or "--models" in doc["env"]["command"]
    assert doc["copy_bandwidth_gbs"] > 0
    assert [p["random_weights"] for p in doc["pairs"]] == [True, True]
    assert doc["pairs"][0]["large"] == "tiny-llama-b"  # the bigger shape is the large model
    rows = doc["rows"]
    fields = ("pair", "contender", "batch", "tokens_per_s", "ratio_vs_hf", "ratio_vs_hf_assisted",
              "acceptance_length", "large_call_fraction", "bandwidth_gbs", "bandwidth_share", "note", "error")
    for r in rows:
        assert all(f in r for f in fields)
    for pair in ("tiny-llama-a_tiny-llama-b", "tiny-qwen2_early_exit1"):
        for b in (1, 2):
            got = {r["contender"]: r for r in rows if r["pair"] == pair and r["batch"] == b}
            assert {"hf", "hf-assisted"} <= set(got), (pair, b, sorted(got))
            assert got["hf"]["ratio_vs_hf"] == pytest.approx(1.0)
            assert got["hf"]["tokens_per_s"] > 0 and got["hf"]["bandwidth_gbs"] > 0
    engine_rows = [r for r in rows if r["kind"] == "engine"]
    if engine_rows:  # the engine is there: every method measured, without errors
        assert rc == 0, [r["error"] for r in rows if r["error"]]
        for r in engine_rows:
            assert r["tokens_per_s"] > 0 and 0 <= r["large_call_fraction"] <= 1.0 + 1e-9
            if r["contender"] == "speculative":
                assert r["acceptance_length"] >= 1.0
