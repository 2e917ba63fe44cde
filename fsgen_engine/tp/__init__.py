"""Tensor parallelism of the engine's models over ``torch.distributed`` (see ``runtime.py``).

System 2 runs at ``tensor_parallel=N`` (Megatron-style shards, ``models/tensor_parallel.py``) while
System 1 runs at ``small_tensor_parallel`` (1: whole on rank 0's device, paying no communication; or N:
sharded like System 2).
"""
from fsgen_engine.tp.runtime import TPRuntime, TPWorkerError
from fsgen_engine.tp.sharded_model import ShardedModel

__all__ = ["TPRuntime", "TPWorkerError", "ShardedModel"]
