"""Compatibility with the FS-GEN research code: its ``FSGenOpenSource`` API and its record format."""
from .fsgen_open_source import TOPK, FSGenOpenSource
from .names import METHODS, parse_method, parse_router, research_method_info
from fsgen_engine.records import DATASET_KEYS, RESULT_KEYS, read_fsgen_records, record_from_output, write_fsgen_records

__all__ = ["FSGenOpenSource", "TOPK", "METHODS", "parse_method", "parse_router", "research_method_info",
           "write_fsgen_records", "read_fsgen_records", "record_from_output", "RESULT_KEYS", "DATASET_KEYS"]
