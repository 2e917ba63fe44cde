"""Test configuration shared by every test module.

On a machine without a GPU, Triton kernels run under the interpreter: TRITON_INTERPRET must be set
before triton is first imported, so it is set here, at collection time.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# pytest-xdist runs one worker per core; more torch threads per worker only contend for the cores
# (tiny matmuls then wait for time slices), so each worker computes on one thread.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

import pytest  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def pytest_generate_tests(metafunc):
    # Any test that takes a `device` argument runs on every device present.
    if "device" in metafunc.fixturenames and not any(
        m.name == "parametrize" and "device" in m.args[0] for m in metafunc.definition.iter_markers()
    ):
        metafunc.parametrize("device", DEVICES)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _split_rows(request, monkeypatch):
    # @pytest.mark.split_rows(n): the CUDA ops cut every row into n column splits (FSGEN_SPLIT_ROWS)
    mark = request.node.get_closest_marker("split_rows")
    if mark is not None:
        monkeypatch.setenv("FSGEN_SPLIT_ROWS", str(mark.args[0]))
    yield
