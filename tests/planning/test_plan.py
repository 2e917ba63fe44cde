"""`fsgen plan`: the arithmetic against values computed by hand for one tiny config, and clear errors."""
import json
from types import SimpleNamespace

import pytest

from fsgen_engine.cli import main
from fsgen_engine.planning.hardware import GPU, parse_gpus
from fsgen_engine.planning.plan import make_plan, read_elems, weight_elems
from fsgen_engine.planning.shapes import dims_from_config, resolve_model

# large: qwen2 (q/k/v biases), untied head; small: llama, tied head.
LARGE = dict(model_type="qwen2", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=128, vocab_size=512, tie_word_embeddings=False)
SMALL = dict(model_type="llama", hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
             intermediate_size=64, vocab_size=512, tie_word_embeddings=True)
TOY_GPU = GPU("toy", 1_000_000, 3.35e12, 450e9, "test link", 10e-6)


def test_tiny_pair_tp2_by_hand():
    plan = make_plan(dims_from_config(LARGE, "L"), dims_from_config(SMALL, "S"), TOY_GPU, 2, 2, dtype_bytes=2,
                     context=10, num_draft_tokens=5)
    # Large, per rank (head_dim 16, 2 q heads and 1 KV head per rank):
    #   layer = q 64*32 + k,v 2*64*16 + o 32*64 + bias 32+16+16 + mlp 3*64*64 + norms 128 = 18624
    #   weights = 2*18624 + 64 + (embed + head) 2*256*64 = 70080 params = 140160 bytes
    #   read = 2*18624 + 64 + head 256*64 = 53696 params = 107392 bytes; KV 2*2*1*16*2 = 128 bytes/token
    # Small (TP=1): layer = 3*32*32 + 2*32*16 + 3*32*64 + 64 = 9280; + 32 + tied 512*32 = 25696 params = 51392 bytes;
    #   read is the same (tied: the embedding is the head); KV 2*1*1*16*2 = 64 bytes/token
    r0, r1 = plan.ranks
    assert (r0.weight_bytes, r1.weight_bytes) == (140160 + 51392, 140160)
    assert (r0.kv_bytes_per_token, r1.kv_bytes_per_token) == (192, 128)
    # usable 900000 bytes: (900000 - 191552) // 192 = 3689, (900000 - 140160) // 128 = 5936
    assert (r0.kv_capacity_tokens, r1.kv_capacity_tokens, plan.kv_capacity_tokens) == (3689, 5936, 3689)
    # all-reduce: (2*2 + 1) messages of 64 * 2 bytes = 640; sent: ring 2*(1/2)*640 + gather (1/2)*512*2 = 1152
    assert r0.allreduce_bytes_per_token == r1.allreduce_bytes_per_token == 640
    assert r0.ring_bytes_per_token == pytest.approx(1152)
    bw = 3.35e12 * 0.9
    tl = (107392 + 10 * 128) / bw + 1152 / 450e9 + 6 * 10e-6
    ts = (51392 + 10 * 64) / bw
    tv = (107392 + 10 * 128) / bw + 6 * 1152 / 450e9 + 6 * 10e-6  # verification of K+1 = 6 tokens
    assert plan.t_large_s == pytest.approx(tl, rel=1e-12) and plan.t_small_s == pytest.approx(ts, rel=1e-12)
    want = {"large": tl, "small": ts, "oracle": ts + 0.17 * tl, "contrastive": ts + 0.17 * tl,
            "proxy": 2 * ts + 0.25 * tl, "speculative": 0.3 * (5 * ts + tv)}
    got = {m.method: m.seconds_per_token for m in plan.methods}
    assert got == pytest.approx(want, rel=1e-12)
    assert {m.method: m.tokens_per_s for m in plan.methods} == pytest.approx({k: 1 / v for k, v in want.items()})


def test_tp1_reads_what_the_bandwidth_model_reads():
    from fsgen_engine.benchmark.bandwidth import shape_from_hf_config
    from fsgen_engine.benchmark.configs import SHAPES

    for name in ("qwen1.5-72b", "qwen2.5-0.5b", "llama-3-8b", "llama-3.2-1b"):
        d = resolve_model(name)
        assert read_elems(d, 1) == shape_from_hf_config(SimpleNamespace(**SHAPES[name]), 2).weight_params, name


def test_published_parameter_counts():
    # model cards: Qwen1.5-72B 72.3B, Qwen1.5-0.5B 0.62B, Llama-3-70B 70.6B parameters
    for name, billions in (("qwen1.5-72b", 72.3), ("qwen1.5-0.5b", 0.62), ("llama-3-70b", 70.6)):
        assert weight_elems(resolve_model(name), 1) / 1e9 == pytest.approx(billions, rel=0.01), name


def test_kv_heads_replicated_when_fewer_than_ranks():
    d = resolve_model("qwen2.5-72b")  # 8 KV heads
    plan = make_plan(d, resolve_model("qwen2.5-0.5b"), parse_gpus("16xH100")[1], 16, 16)
    assert plan.ranks[1].kv_bytes_per_token == 2 * 80 * 1 * 128 * 2  # one (replicated) KV head per rank


@pytest.mark.parametrize("cfg,tp,needle", [
    (dict(LARGE, vocab_size=510), 4, "vocab_size=510"),
    (dict(LARGE, num_attention_heads=4), 3, "num_attention_heads=4"),
    (dict(LARGE, intermediate_size=130), 4, "intermediate_size=130"),
    (dict(LARGE, num_attention_heads=6, num_key_value_heads=3), 2, "num_key_value_heads=3, not divisible"),
    (dict(LARGE, num_attention_heads=12, num_key_value_heads=3), 4, "cannot be replicated evenly"),
])
def test_bad_tp_is_a_clear_error(cfg, tp, needle):
    with pytest.raises(ValueError, match=needle):
        make_plan(dims_from_config(cfg, "L"), dims_from_config(SMALL, "S"), TOY_GPU, 4, tp)


def test_bad_gpus_and_models():
    with pytest.raises(ValueError, match="unknown GPU 'V100'.*H100"):
        parse_gpus("4xV100")
    with pytest.raises(ValueError, match="COUNTxNAME"):
        parse_gpus("four H100")
    assert parse_gpus("2xh200")[0] == 2 and parse_gpus("H200")[0] == 1
    with pytest.raises(ValueError, match="more ranks than the 2 GPU"):
        make_plan(resolve_model("qwen1.5-7b"), resolve_model("qwen1.5-0.5b"), parse_gpus("H100")[1], 2, 4)
    with pytest.raises(ValueError, match="neither a known name"):
        resolve_model("qwen9-1t")


def test_cli_json_from_a_config_folder(tmp_path, capsys):
    (tmp_path / "L").mkdir()
    (tmp_path / "L" / "config.json").write_text(json.dumps(LARGE))
    (tmp_path / "s.json").write_text(json.dumps(SMALL))
    rc = main(["plan", "--large", str(tmp_path / "L"), "--small", str(tmp_path / "s.json"), "--gpus", "2xH100",
               "--context", "10", "--link-gbps", "100", "--allreduce-latency-us", "0", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tp"] == 2 and out["ranks"][1]["weight_bytes"] == 140160
    assert out["t_large_s"] == pytest.approx((107392 + 10 * 128) / (3.35e12 * 0.9) + 1152 / 100e9, rel=1e-12)


def test_cli_errors_and_table(capsys):
    assert main(["plan", "--large", "qwen1.5-72b", "--small", "qwen1.5-0.5b", "--gpus", "3xH100"]) == 2
    assert "num_attention_heads=64, not divisible by 3" in capsys.readouterr().err
    assert main(["plan", "--large", "qwen1.5-72b", "--small", "qwen1.5-0.5b", "--gpus", "4xH100",
                 "--share", "oracle=2"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err
    assert main(["plan", "--large", "qwen1.5-72b", "--small", "qwen1.5-0.5b", "--gpus", "1xH100"]) == 0
    assert "WARNING: does not fit: rank 0 holds 135.8 GiB" in capsys.readouterr().out  # 145 GB on one 80 GB GPU


def test_layer_overhead_adds_per_layer_and_step():
    lg, sm = dims_from_config(LARGE, "L"), dims_from_config(SMALL, "S")
    base = make_plan(lg, sm, TOY_GPU, 2, 2, context=10)
    slow = make_plan(lg, sm, TOY_GPU, 2, 2, context=10, layer_overhead_s=100e-6)
    assert slow.t_large_s == pytest.approx(base.t_large_s + 2 * 100e-6, rel=1e-12)  # 2 large layers
    assert slow.t_small_s == pytest.approx(base.t_small_s + 1 * 100e-6, rel=1e-12)  # 1 small layer
    with pytest.raises(ValueError, match="--layer-overhead-us -1 must be >= 0"):
        make_plan(lg, sm, TOY_GPU, 2, 2, layer_overhead_s=-1e-6)
