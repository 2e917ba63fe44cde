"""Tiny random HF Llama models sharing a vocabulary, built so routers see a mix of peaky and flat
System-1 distributions and the models agree on some steps and disagree on others."""
from __future__ import annotations

import functools

import torch

VOCAB = 256
EOS = 2
PAD = 0


def tiny_config(**kw):
    from transformers import LlamaConfig

    cfg = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
               tie_word_embeddings=False, bos_token_id=1, eos_token_id=EOS, pad_token_id=PAD)
    cfg.update(kw)
    return LlamaConfig(**cfg)


def tiny_models(seed: int = 0, noise: float = 0.25, head_scale: float = 25.0):
    """``(large, small, small_ft)`` float32 eval-mode LlamaForCausalLM; small = large + noise,
    small_ft = small + noise, so their argmaxes agree often but not always."""
    from transformers import LlamaForCausalLM

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    large = LlamaForCausalLM(tiny_config()).eval()
    with torch.no_grad():
        large.lm_head.weight.mul_(head_scale)  # peaky enough that max_prob crosses 0.5 on some steps

    def perturbed(src):
        m = LlamaForCausalLM(tiny_config()).eval()
        m.load_state_dict(src.state_dict())
        with torch.no_grad():
            for p in m.parameters():
                p.add_(noise * p.std() * torch.randn(p.shape, generator=g))
        return m

    small = perturbed(large)
    small_ft = perturbed(small)
    return large, small, small_ft


@functools.lru_cache(maxsize=1)
def tiny_tokenizer():
    """A word-level PreTrainedTokenizerFast over VOCAB tokens: <pad>, <s>, </s>, <unk>, then w4..w255."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    vocab.update({f"w{i}": i for i in range(4, VOCAB)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    from tokenizers import decoders

    tok.decoder = decoders.WordPiece(prefix="##")  # joins word-level tokens with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def save_tiny(tmp_path, seed: int = 0):
    """Save the three models (each with the tokenizer) under tmp_path; returns their folder paths."""
    tok = tiny_tokenizer()
    paths = []
    for name, m in zip(("large", "small", "small_ft"), tiny_models(seed)):
        p = tmp_path / name
        m.save_pretrained(p)
        tok.save_pretrained(p)
        paths.append(str(p))
    return paths
