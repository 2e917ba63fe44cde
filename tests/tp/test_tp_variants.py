"""Tensor-parallel engines other than the default layout: System 1 sharded like System 2, an early-exit
draft on the large model's shards. (One spawned group per process: each test closes its engine.)"""
from __future__ import annotations

import pytest

from fsgen_engine import Engine, MethodOptions
from tests.tp.conftest import engine_kwargs
from tests.tp.test_tp_engine import CASES, _gen, _key

# one xdist worker runs the tensor-parallel tests in order: each spawns ranks of its own, and one
# spawned group per process is open at a time
pytestmark = pytest.mark.xdist_group("tp")


def test_small_sharded_too(tp_folders):
    single = Engine(tp_folders["large"], tp_folders["small"], tp_folders["small_ft"], **engine_kwargs())
    with Engine(tp_folders["large"], tp_folders["small"], tp_folders["small_ft"], tensor_parallel=2,
                small_tensor_parallel=2, **engine_kwargs()) as e:
        assert all(m.tp_size == 2 for m in e.models.values())
        for method, router, options in (CASES[2], CASES[6], CASES[7]):
            assert _key(_gen(e, method, router, options)) == _key(_gen(single, method, router, options))


def test_early_exit_small_on_the_large_shards(tp_folders):
    kw = engine_kwargs()
    one = Engine(tp_folders["large"], "early_exit:2", **kw)
    with Engine(tp_folders["large"], "early_exit:2", tensor_parallel=2, small_tensor_parallel=2, **kw) as e:
        opts = MethodOptions(num_draft_tokens=3)
        assert _key(_gen(e, "speculative", None, opts)) == _key(_gen(one, "speculative", None, opts))
