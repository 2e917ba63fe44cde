"""Llama-style decoder: Llama 2/3, Mistral, SmolLM, Qwen1.5/2/2.5 (q/k/v bias), Qwen3 (per-head q/k RMSNorm).

Pre-norm RMSNorm blocks, grouped-query attention with rotary embeddings, SwiGLU MLP; tied or untied
LM head. Weights use HF's ``LlamaForCausalLM`` parameter names.
"""
from __future__ import annotations

import torch.nn.functional as F

from fsgen_engine.models.base import CausalLM, WeightSource
from fsgen_engine.models.config import ModelConfig
from fsgen_engine.models.layers import activation, apply_rotary, rms_norm
from fsgen_engine.models.tensor_parallel import ShardedWeights, TPShard, check_geometry


class LlamaModel(CausalLM):
    family = "llama"

    def __init__(self, config, weights, dtype, device):
        super().__init__(config, weights, dtype, device)
        self.act = activation(config.hidden_act)

    @classmethod
    def from_weights(cls, cfg: ModelConfig, src: WeightSource, tp: TPShard | None = None) -> "LlamaModel":
        """The model, or with ``tp`` one rank's shard of it (models/tensor_parallel.py)."""
        w = ShardedWeights(src, tp)
        H, Hkv, D, inter = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.intermediate_size
        if tp is not None:
            check_geometry(src.origin, H, Hkv, src.shape("model.embed_tokens.weight")[0], inter, tp.size)
        q0, q1, k0, k1 = tp.heads(H, Hkv) if tp else (0, H, 0, Hkv)
        i0, i1 = tp.block(inter) if tp else (0, inter)
        embed, embed_lo, _ = w.vocab_rows("model.embed_tokens.weight")
        if cfg.tie_word_embeddings or "lm_head.weight" not in src:
            lm_head, head_rows = embed, src.shape("model.embed_tokens.weight")[0]
        else:
            lm_head, _, head_rows = w.vocab_rows("lm_head.weight")
        layers = []
        for i in range(cfg.num_layers):
            p = f"model.layers.{i}."
            a, m = p + "self_attn.", p + "mlp."
            L = {
                "ln1": w.full(p + "input_layernorm.weight"),
                "ln2": w.full(p + "post_attention_layernorm.weight"),
                "wq": w.rows(a + "q_proj.weight", q0 * D, q1 * D),
                "wk": w.rows(a + "k_proj.weight", k0 * D, k1 * D),
                "wv": w.rows(a + "v_proj.weight", k0 * D, k1 * D),
                "wo": w.cols(a + "o_proj.weight", q0 * D, q1 * D),
                "bq": w.rows(a + "q_proj.bias", q0 * D, q1 * D, required=False),
                "bk": w.rows(a + "k_proj.bias", k0 * D, k1 * D, required=False),
                "bv": w.rows(a + "v_proj.bias", k0 * D, k1 * D, required=False),
                "bo": w.full(a + "o_proj.bias", required=False),
                "w_gate": w.rows(m + "gate_proj.weight", i0, i1),
                "w_up": w.rows(m + "up_proj.weight", i0, i1),
                "w_down": w.cols(m + "down_proj.weight", i0, i1),
                "b_gate": w.rows(m + "gate_proj.bias", i0, i1, required=False),
                "b_up": w.rows(m + "up_proj.bias", i0, i1, required=False),
                "b_down": w.full(m + "down_proj.bias", required=False),
            }
            if cfg.qk_norm:
                L["q_norm"] = w.full(a + "q_norm.weight")
                L["k_norm"] = w.full(a + "k_norm.weight")
            if cfg.qkv_bias and L["bq"] is None:
                raise ValueError(f"{src.origin}: {cfg.model_type} has q/k/v biases but {p}self_attn.q_proj.bias "
                                 f"is missing")
            layers.append(L)
        weights = {"embed": embed, "final_norm": w.full("model.norm.weight"), "lm_head": lm_head, "layers": layers}
        return cls._assemble(cfg, weights, src, tp, embed_lo, head_rows, num_heads=q1 - q0, num_kv_heads=k1 - k0,
                             intermediate_size=i1 - i0)

    def _layer(self, i, x, batch, kv, cos, sin):
        c, L = self.config, self.weights["layers"][i]
        n = x.shape[0]
        h = rms_norm(x, L["ln1"], c.norm_eps)
        q = F.linear(h, L["wq"], L["bq"]).view(n, c.num_heads, c.head_dim)
        k = F.linear(h, L["wk"], L["bk"]).view(n, c.num_kv_heads, c.head_dim)
        v = F.linear(h, L["wv"], L["bv"]).view(n, c.num_kv_heads, c.head_dim)
        if c.qk_norm:
            q = rms_norm(q, L["q_norm"], c.norm_eps)
            k = rms_norm(k, L["k_norm"], c.norm_eps)
        q = apply_rotary(q, cos, sin)
        k = apply_rotary(k, cos, sin)
        o = self._attend(i, q, k, v, batch, kv)
        x = x + self._row_linear(o, L["wo"], L["bo"])
        h = rms_norm(x, L["ln2"], c.norm_eps)
        m = self.act(F.linear(h, L["w_gate"], L["b_gate"])) * F.linear(h, L["w_up"], L["b_up"])
        return x + self._row_linear(m, L["w_down"], L["b_down"])

    def _final_norm(self, x):
        return rms_norm(x, self.weights["final_norm"], self.config.norm_eps)
