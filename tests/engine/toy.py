"""Tiny random HF models + a tokenizer for engine tests, and ``RecomputeModel``: the engine's model
interface over an HF model by full recompute (its "KV cache" stores token ids in the page slots, so
paging, rollback and catch-up are exercised exactly while the logits are HF's own)."""
from __future__ import annotations

import torch

VOCAB = 256


def make_tokenizer(tmpdir=None):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for i in range(3, VOCAB):
        vocab[f"w{i}"] = i
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    from tokenizers import decoders
    tk.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    if tmpdir is not None:
        tok.save_pretrained(tmpdir)
    return tok


def make_hf(family: str, layers: int, seed: int, hidden: int = 64, vocab: int = VOCAB, max_pos: int = 256):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    kw = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_pos, bos_token_id=1,
              eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    if family == "llama":
        m = LlamaForCausalLM(LlamaConfig(**kw))
    else:
        m = Qwen2ForCausalLM(Qwen2Config(**kw))
    with torch.no_grad():  # sharper distributions than the default init: more agreement, real decisions
        m.lm_head.weight.mul_(24.0)
    m.generation_config.eos_token_id = None
    m.generation_config.pad_token_id = 0
    return m.eval()


class RecomputeModel:
    def __init__(self, hf, tokenizer=None, name="toy"):
        self.hf = hf
        c = hf.config
        self.num_layers, self.num_kv_heads, self.head_dim = 1, 1, 1
        self.kv_dtype = torch.float32
        self.vocab_size = c.vocab_size
        self.max_position_embeddings = c.max_position_embeddings
        self.eos_token_ids = [2]
        self.tokenizer = tokenizer
        self.name = name
        self.calls = 0

    def early_exit(self, n):  # not used with this toy
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, batch, kv):
        self.calls += 1
        store = kv.k[0].view(-1)
        store[batch.slot_mapping] = batch.input_ids.to(torch.float32)
        S = kv.k[0].shape[1]
        rows = []
        for b in range(batch.batch_size):
            L = int(batch.seq_lens[b])
            q = int(batch.cu_q_lens[b + 1] - batch.cu_q_lens[b])
            pos = torch.arange(L)
            slots = batch.page_table[b].long()[pos // S] * S + pos % S
            toks = store[slots].long()
            logits = self.hf(toks[None]).logits[0].float()
            rows.append(logits[L - q:L])
        return torch.cat(rows)[batch.logits_indices]


def hf_greedy(hf, prompt, n):
    """Full-recompute greedy continuation of ``prompt`` (list) by ``n`` tokens."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(hf(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt):]
