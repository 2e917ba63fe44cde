"""GPT-NeoX (Pythia): LayerNorm with bias, fused per-head interleaved QKV, partial rotary, GELU MLP,
parallel residual (``use_parallel_residual``). Weights use HF's ``GPTNeoXForCausalLM`` names.

The fused ``query_key_value`` projection is kept in HF's layout (output row ``h*3*D + j*D + d`` is
head ``h``, part ``j`` in q/k/v, dim ``d``) so the HF tensor is shared; its output is split as
``[N, H, 3, D]``.
"""
from __future__ import annotations

import torch.nn.functional as F

from fsgen_engine.models.base import CausalLM, WeightSource
from fsgen_engine.models.config import ModelConfig
from fsgen_engine.models.layers import activation, apply_rotary, layer_norm


class GPTNeoXModel(CausalLM):
    family = "gpt_neox"

    def __init__(self, config, weights, dtype, device):
        super().__init__(config, weights, dtype, device)
        if config.num_kv_heads != config.num_heads:
            raise ValueError(f"GPT-NeoX has no grouped-query attention, but num_key_value_heads="
                             f"{config.num_kv_heads} != num_attention_heads={config.num_heads}")
        self.act = activation(config.hidden_act)

    @classmethod
    def from_weights(cls, cfg: ModelConfig, src: WeightSource) -> "GPTNeoXModel":
        embed = src.require("gpt_neox.embed_in.weight")
        # Pythia checkpoints name the head embed_out; transformers >= 5 renames it lm_head
        head = "embed_out.weight" if "embed_out.weight" in src else "lm_head.weight"
        lm_head = embed if cfg.tie_word_embeddings else src.require(head)
        layers = []
        for i in range(cfg.num_layers):
            p = f"gpt_neox.layers.{i}."
            layers.append({
                "ln1": src.require(p + "input_layernorm.weight"), "ln1_b": src.get(p + "input_layernorm.bias"),
                "ln2": src.require(p + "post_attention_layernorm.weight"),
                "ln2_b": src.get(p + "post_attention_layernorm.bias"),
                "wqkv": src.require(p + "attention.query_key_value.weight"),
                "bqkv": src.get(p + "attention.query_key_value.bias"),
                "wo": src.require(p + "attention.dense.weight"), "bo": src.get(p + "attention.dense.bias"),
                "w_up": src.require(p + "mlp.dense_h_to_4h.weight"), "b_up": src.get(p + "mlp.dense_h_to_4h.bias"),
                "w_down": src.require(p + "mlp.dense_4h_to_h.weight"),
                "b_down": src.get(p + "mlp.dense_4h_to_h.bias"),
            })
        weights = {"embed": embed, "final_norm": src.require("gpt_neox.final_layer_norm.weight"),
                   "final_norm_bias": src.get("gpt_neox.final_layer_norm.bias"), "lm_head": lm_head,
                   "layers": layers}
        return cls(cfg, weights, src.dtype, src.device)

    def _layer(self, i, x, batch, kv, cos, sin):
        c, L = self.config, self.weights["layers"][i]
        n = x.shape[0]
        h = layer_norm(x, L["ln1"], L["ln1_b"], c.norm_eps)
        qkv = F.linear(h, L["wqkv"], L["bqkv"]).view(n, c.num_heads, 3, c.head_dim)
        q = apply_rotary(qkv[:, :, 0], cos, sin)
        k = apply_rotary(qkv[:, :, 1], cos, sin)
        o = self._attend(i, q.contiguous(), k, qkv[:, :, 2], batch, kv)
        attn = F.linear(o, L["wo"], L["bo"])
        if c.parallel_residual:
            mlp = self._mlp(L, layer_norm(x, L["ln2"], L["ln2_b"], c.norm_eps))
            return mlp + attn + x
        x = attn + x
        return self._mlp(L, layer_norm(x, L["ln2"], L["ln2_b"], c.norm_eps)) + x

    def _mlp(self, L, h):
        return F.linear(self.act(F.linear(h, L["w_up"], L["b_up"])), L["w_down"], L["b_down"])

    def _final_norm(self, x):
        return layer_norm(x, self.weights["final_norm"], self.weights.get("final_norm_bias"), self.config.norm_eps)
