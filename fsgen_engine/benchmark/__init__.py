"""End-to-end tokens/s harness (``fsgen bench``): engine methods against HF transformers baselines.

- :mod:`.configs`   model shapes (real Qwen2.5 configs, tiny test configs), random-weight model folders,
                    the embedded default model (SmolLM2-135M-Instruct GGUF) and ``--models`` specs
- :mod:`.bandwidth` bytes read per decoding step, achieved bandwidth, measured copy bandwidth
- :mod:`.hf`        HF transformers baselines: ``generate`` (static cache) and assisted generation
- :mod:`.harness`   the measurement loop (warm-up, medians) and the result rows
- :mod:`.report`    environment info, JSON, markdown table and plot
"""
from fsgen_engine.benchmark.bandwidth import achieved_bandwidth, bytes_per_step, kv_bytes_per_token

__all__ = ["achieved_bandwidth", "bytes_per_step", "kv_bytes_per_token"]
