import copy
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from toy import RecomputeModel, make_hf, make_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def tok():
    return make_tokenizer()


@pytest.fixture(scope="session")
def hf_models():
    """large (llama, 3 layers), small (a perturbed copy: mostly agrees), other (independent qwen2),
    small_ft (another perturbation of small)."""
    large = make_hf("llama", 3, 0)
    torch.manual_seed(100)
    small = copy.deepcopy(large)
    with torch.no_grad():
        for p in small.parameters():
            p.add_(0.08 * torch.randn_like(p) * p.abs().mean())
    other = make_hf("qwen2", 2, 7)
    small_ft = copy.deepcopy(small)
    torch.manual_seed(101)
    with torch.no_grad():
        for p in small_ft.parameters():
            p.add_(0.15 * torch.randn_like(p) * p.abs().mean())
    return {"large": large, "small": small, "other": other, "small_ft": small_ft}


@pytest.fixture(scope="session")
def toy_engine(hf_models, tok):
    from fsgen_engine.engine import Engine

    m = {k: RecomputeModel(v, tok, k) for k, v in hf_models.items()}
    return Engine(m["large"], m["small"], m["small_ft"], num_pages=400, page_size=4, max_batch=8, device="cpu")


@pytest.fixture(scope="session")
def far_engine(hf_models, tok):
    """Small model unrelated to the large one: many rejections / mismatches."""
    from fsgen_engine.engine import Engine

    m = {k: RecomputeModel(v, tok, k) for k, v in hf_models.items()}
    return Engine(m["large"], m["other"], m["small_ft"], num_pages=400, page_size=4, max_batch=8, device="cpu")


PROMPTS = [[1, 5, 6, 7], [1, 9, 10, 11, 12, 13, 14, 15, 16], [1, 20], [1, 33, 34, 35, 36, 37]]
