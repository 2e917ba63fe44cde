"""Tokenizers through transformers' AutoTokenizer, from local files only."""
from __future__ import annotations

import os

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model")


def load_tokenizer(folder: str):
    """The tokenizer saved in an HF ``folder``, or None when the folder holds no tokenizer files."""
    if not any(os.path.exists(os.path.join(folder, f)) for f in _TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def load_gguf_tokenizer(gguf_path: str):
    """The tokenizer stored in a GGUF file's metadata."""
    from transformers import AutoTokenizer

    d, name = os.path.split(os.path.abspath(gguf_path))
    return AutoTokenizer.from_pretrained(d, gguf_file=name, local_files_only=True)
