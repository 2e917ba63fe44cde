"""fsgen_engine: a custom-kernel inference engine for collaborative (fast and slow) decoding."""
from fsgen_engine import ops

__version__ = "0.1.0"

__all__ = ["ops", "__version__"]
