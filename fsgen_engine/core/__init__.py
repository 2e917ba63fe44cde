"""The bottom layer: types and rules every other layer may import, importing nothing of the package.

* ``ForwardBatch`` (``core/forward_batch.py``): the one structure every model forward takes.
* ``resolve_device`` / ``resolve_dtype`` (``core/device.py``): what ``"auto"`` means.
* ``SamplingParams`` and the one sampling-parameter validator (``core/sampling.py``).

The layer order of the whole package is the import-linter contract in ``pyproject.toml``
(``docs/architecture.md`` explains it).
"""
from __future__ import annotations

from fsgen_engine.core.device import resolve_device, resolve_dtype
from fsgen_engine.core.forward_batch import ForwardBatch
from fsgen_engine.core.sampling import SamplingParams

__all__ = ["ForwardBatch", "SamplingParams", "resolve_device", "resolve_dtype"]
