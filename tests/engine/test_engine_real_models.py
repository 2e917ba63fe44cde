"""The engine over the real model implementations (fsgen_engine.models): HF folders of two families and
the SmolLM2 GGUF with an early-exit drafter. Skipped until fsgen_engine.models provides load_model."""

import pytest
import torch

models = pytest.importorskip("fsgen_engine.models")
if not hasattr(models, "load_model"):
    pytest.skip("fsgen_engine.models.load_model not available yet", allow_module_level=True)

from tests._embedded_model import embedded_model_path  # noqa: E402
from toy import make_hf, make_tokenizer  # noqa: E402

from fsgen_engine import MethodOptions  # noqa: E402

PROMPTS = [[1, 5, 6, 7], [1, 9, 10, 11, 12, 13, 14, 15, 16], [1, 20]]


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def folders(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    tok = make_tokenizer()
    out = {}
    for role, layers, seed in (("large", 3, 0), ("small", 2, 1)):
        m = make_hf(request.param, layers, seed)
        m.save_pretrained(d / role)
        tok.save_pretrained(d / role)
        out[role] = (str(d / role), m)
    return out


def test_hf_folders_large_small_speculative(folders):
    from fsgen_engine.engine import Engine

    eng = Engine(folders["large"][0], folders["small"][0], device="cpu", dtype="float32", kv_memory="8MiB")
    for role in ("large", "small"):
        hf = folders[role][1]
        outs = eng.generate(PROMPTS, method=role, max_new_tokens=8, ignore_eos=True, progress=False)
        for p, o in zip(PROMPTS, outs):
            assert o.token_ids == hf.generate(torch.tensor([p]), max_new_tokens=8, do_sample=False)[0, len(p):].tolist()
    large = [o.token_ids for o in eng.generate(PROMPTS, method="large", max_new_tokens=8, ignore_eos=True,
                                               progress=False)]
    for k in (1, 4):
        outs = eng.generate(PROMPTS, method="speculative", options=MethodOptions(num_draft_tokens=k), max_new_tokens=8,
                            ignore_eos=True, progress=False)
        assert [o.token_ids for o in outs] == large
    assert eng.kv.num_free_pages == eng.kv.num_pages


@pytest.mark.slow
def test_smollm2_gguf_early_exit_speculative():
    path = embedded_model_path()
    from fsgen_engine.engine import Engine

    eng = Engine(path, "early_exit:8", device="cpu", dtype="float32", kv_memory="64MiB", max_batch=2)
    prompts = ["The capital of France is", "def fibonacci(n):"]
    large = eng.generate(prompts, method="large", max_new_tokens=12, progress=False)
    spec = eng.generate(prompts, method="speculative", options=MethodOptions(num_draft_tokens=3), max_new_tokens=12,
                        progress=False)
    assert [o.token_ids for o in spec] == [o.token_ids for o in large]
    assert all(o.stats.large_calls >= 1 for o in spec)
    assert eng.kv.num_free_pages == eng.kv.num_pages
