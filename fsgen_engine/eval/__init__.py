"""Data-set evaluation: prompts and sampling (datasets), answer checking (answers), the MBPP sandbox
(sandbox), the eval loop over an Engine (runner), FS-GEN records (records) and the speed-quality
frontier sweep (sweep)."""
from .answers import check_gsm8k, check_math, check_mmlu, extract_boxed, extract_mmlu  # noqa: F401
from .datasets import DATASETS, load_examples  # noqa: F401
