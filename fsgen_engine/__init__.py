"""fsgen_engine: a custom-kernel inference engine for collaborative (fast and slow) decoding."""
from fsgen_engine import ops
from fsgen_engine.core import SamplingParams

__version__ = "0.1.0"

__all__ = ["ops", "__version__", "Engine", "GenerationOutput", "MethodOptions", "SamplingParams"]


def __getattr__(name):
    # lazy: importing the package must not load the engine (models, transformers)
    if name == "Engine":
        from fsgen_engine.engine import Engine

        return Engine
    if name == "MethodOptions":
        from fsgen_engine.generate_args import MethodOptions

        return MethodOptions
    if name == "GenerationOutput":
        from fsgen_engine.outputs import GenerationOutput

        return GenerationOutput
    raise AttributeError(f"module 'fsgen_engine' has no attribute {name!r}")
