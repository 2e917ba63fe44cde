"""Llama-style decoder: Llama 2/3, Mistral, SmolLM, Qwen1.5/2/2.5 (q/k/v bias), Qwen3 (per-head q/k RMSNorm).

Pre-norm RMSNorm blocks, grouped-query attention with rotary embeddings, SwiGLU MLP; tied or untied
LM head. Weights use HF's ``LlamaForCausalLM`` parameter names.
"""
from __future__ import annotations

import torch.nn.functional as F

from fsgen_engine.models.base import CausalLM, WeightSource
from fsgen_engine.models.config import ModelConfig
from fsgen_engine.models.layers import activation, apply_rotary, rms_norm


class LlamaModel(CausalLM):
    family = "llama"

    def __init__(self, config, weights, dtype, device):
        super().__init__(config, weights, dtype, device)
        self.act = activation(config.hidden_act)

    @classmethod
    def from_weights(cls, cfg: ModelConfig, src: WeightSource) -> "LlamaModel":
        embed = src.require("model.embed_tokens.weight")
        lm_head = None if cfg.tie_word_embeddings else src.get("lm_head.weight")
        layers = []
        for i in range(cfg.num_layers):
            p = f"model.layers.{i}."
            L = {
                "ln1": src.require(p + "input_layernorm.weight"),
                "ln2": src.require(p + "post_attention_layernorm.weight"),
                "wq": src.require(p + "self_attn.q_proj.weight"),
                "wk": src.require(p + "self_attn.k_proj.weight"),
                "wv": src.require(p + "self_attn.v_proj.weight"),
                "wo": src.require(p + "self_attn.o_proj.weight"),
                "bq": src.get(p + "self_attn.q_proj.bias"),
                "bk": src.get(p + "self_attn.k_proj.bias"),
                "bv": src.get(p + "self_attn.v_proj.bias"),
                "bo": src.get(p + "self_attn.o_proj.bias"),
                "w_gate": src.require(p + "mlp.gate_proj.weight"),
                "w_up": src.require(p + "mlp.up_proj.weight"),
                "w_down": src.require(p + "mlp.down_proj.weight"),
                "b_gate": src.get(p + "mlp.gate_proj.bias"),
                "b_up": src.get(p + "mlp.up_proj.bias"),
                "b_down": src.get(p + "mlp.down_proj.bias"),
            }
            if cfg.qk_norm:
                L["q_norm"] = src.require(p + "self_attn.q_norm.weight")
                L["k_norm"] = src.require(p + "self_attn.k_norm.weight")
            if cfg.qkv_bias and L["bq"] is None:
                raise ValueError(f"{src.origin}: {cfg.model_type} has q/k/v biases but {p}self_attn.q_proj.bias "
                                 f"is missing")
            layers.append(L)
        weights = {"embed": embed, "final_norm": src.require("model.norm.weight"),
                   "lm_head": lm_head if lm_head is not None else embed, "layers": layers}
        return cls(cfg, weights, src.dtype, src.device)

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
        x = x + F.linear(o, L["wo"], L["bo"])
        h = rms_norm(x, L["ln2"], c.norm_eps)
        m = self.act(F.linear(h, L["w_gate"], L["b_gate"])) * F.linear(h, L["w_up"], L["b_up"])
        return x + F.linear(m, L["w_down"], L["b_down"])

    def _final_norm(self, x):
        return rms_norm(x, self.weights["final_norm"], self.config.norm_eps)
