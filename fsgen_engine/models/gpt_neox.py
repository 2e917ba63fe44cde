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
from fsgen_engine.models.tensor_parallel import ShardedWeights, TPShard, check_geometry


class GPTNeoXModel(CausalLM):
    family = "gpt_neox"

    def __init__(self, config, weights, dtype, device):
        super().__init__(config, weights, dtype, device)
        if config.num_kv_heads != config.num_heads:
            raise ValueError(f"GPT-NeoX has no grouped-query attention, but num_key_value_heads="
                             f"{config.num_kv_heads} != num_attention_heads={config.num_heads}")
        self.act = activation(config.hidden_act)

    @classmethod
    def from_weights(cls, cfg: ModelConfig, src: WeightSource, tp: TPShard | None = None) -> "GPTNeoXModel":
        """The model, or with ``tp`` one rank's shard of it (models/tensor_parallel.py)."""
        w = ShardedWeights(src, tp)
        H, D, inter = cfg.num_heads, cfg.head_dim, cfg.intermediate_size
        if tp is not None:
            check_geometry(src.origin, H, cfg.num_kv_heads, src.shape("gpt_neox.embed_in.weight")[0], inter,
                           tp.size)
        h0, h1, _, _ = tp.heads(H, H) if tp else (0, H, 0, H)
        i0, i1 = tp.block(inter) if tp else (0, inter)
        embed, embed_lo, embed_rows = w.vocab_rows("gpt_neox.embed_in.weight")
        # Pythia checkpoints name the head embed_out; transformers >= 5 renames it lm_head
        head = "embed_out.weight" if "embed_out.weight" in src else "lm_head.weight"
        if cfg.tie_word_embeddings:
            lm_head, head_rows = embed, embed_rows
        else:
            lm_head, _, head_rows = w.vocab_rows(head)
        layers = []
        for i in range(cfg.num_layers):
            p = f"gpt_neox.layers.{i}."
            # the fused QKV rows are head-major ([H, 3, D]): a block of heads is a block of rows
            layers.append({
                "ln1": w.full(p + "input_layernorm.weight"), "ln1_b": w.full(p + "input_layernorm.bias", False),
                "ln2": w.full(p + "post_attention_layernorm.weight"),
                "ln2_b": w.full(p + "post_attention_layernorm.bias", False),
                "wqkv": w.rows(p + "attention.query_key_value.weight", h0 * 3 * D, h1 * 3 * D),
                "bqkv": w.rows(p + "attention.query_key_value.bias", h0 * 3 * D, h1 * 3 * D, required=False),
                "wo": w.cols(p + "attention.dense.weight", h0 * D, h1 * D),
                "bo": w.full(p + "attention.dense.bias", False),
                "w_up": w.rows(p + "mlp.dense_h_to_4h.weight", i0, i1),
                "b_up": w.rows(p + "mlp.dense_h_to_4h.bias", i0, i1, required=False),
                "w_down": w.cols(p + "mlp.dense_4h_to_h.weight", i0, i1),
                "b_down": w.full(p + "mlp.dense_4h_to_h.bias", False),
            })
        weights = {"embed": embed, "final_norm": w.full("gpt_neox.final_layer_norm.weight"),
                   "final_norm_bias": w.full("gpt_neox.final_layer_norm.bias", False), "lm_head": lm_head,
                   "layers": layers}
        return cls._assemble(cfg, weights, src, tp, embed_lo, head_rows, num_heads=h1 - h0, num_kv_heads=h1 - h0,
                             intermediate_size=i1 - i0)

    def _layer(self, i, x, batch, kv, cos, sin):
        c, L = self.config, self.weights["layers"][i]
        n = x.shape[0]
        h = layer_norm(x, L["ln1"], L["ln1_b"], c.norm_eps)
        qkv = F.linear(h, L["wqkv"], L["bqkv"]).view(n, c.num_heads, 3, c.head_dim)
        q = apply_rotary(qkv[:, :, 0], cos, sin)
        k = apply_rotary(qkv[:, :, 1], cos, sin)
        o = self._attend(i, q.contiguous(), k, qkv[:, :, 2], batch, kv)
        attn = self._row_linear(o, L["wo"], L["bo"])
        if c.parallel_residual:
            mlp = self._mlp(L, layer_norm(x, L["ln2"], L["ln2_b"], c.norm_eps))
            return mlp + attn + x
        x = attn + x
        return self._mlp(L, layer_norm(x, L["ln2"], L["ln2_b"], c.norm_eps)) + x

    def _mlp(self, L, h):
        return self._row_linear(self.act(F.linear(h, L["w_up"], L["b_up"])), L["w_down"], L["b_down"])

    def _final_norm(self, x):
        return layer_norm(x, self.weights["final_norm"], self.weights.get("final_norm_bias"), self.config.norm_eps)
