"""FS-GEN record files (methods doc section 5) from our GenerationOutputs.

``write_records`` writes the research record format of ``fsgen_engine.records`` (with the research
``method_info`` list, and the top-K distributions when the run traced them). ``to_record`` is a
minimal record of one output: per-step statistics only, so ``slm_logits_prob`` / ``llm_logits_prob``
are empty lists (``topK`` 0); every count and ``if_match_now`` (1 = mismatch, per fired step) is exact.
"""
from __future__ import annotations

from fsgen_engine.records import write_fsgen_records

METHOD_NAMES = {"oracle": "OracleDecoding", "contrastive": "ContrastiveDecoding",
                "speculative": "SpeculativeDecoding", "proxy": "ProxyFineTuning",
                "large": "LargeOnly", "small": "SmallOnly", "bild": "BiLD"}
ROUTER_NAMES = {"always": "normal", "never": "none", "max_prob": "threshold", "margin": "delta_threshold",
                "learned": "svm", "svm": "svm", "entropy": "entropy"}


def fsgen_router_name(router: str) -> str:
    base = (router or "").split(":", 1)[0]
    return ROUTER_NAMES.get(base, router or "")


def to_record(out, *, tokens: list[str] | None = None, extra: dict | None = None) -> dict:
    """One FS-GEN record (dict) for one GenerationOutput."""
    cols = out.trace.columns
    flags = [int(tok != sarg) for r, tok, sarg in zip(cols["routed"], cols["token"], cols["small_argmax"]) if r]
    st = out.stats
    rec = {
        "text": out.text,
        "tokens": tokens if tokens is not None else [str(t) for t in out.token_ids],
        "topK": 0,
        "slm_logits_prob": [],
        "llm_logits_prob": [],
        "if_match_now": flags,
        "total_tokens_num": st.total_tokens or len(out.token_ids),
        "latent_tokens_num": st.large_calls,
        "mismatch_tokens_num": st.mismatches,
        "method_info": {"method": METHOD_NAMES.get(out.method, out.method),
                        "router": fsgen_router_name(out.router), "engine_router": out.router},
    }
    meta = out.meta or {}
    for k_rec, k_meta in (("id", "id"), ("dataset", "dataset"), ("inputs", "inputs"), ("correct", "correct"),
                          ("llm_name", "large"), ("slm_name", "small"), ("slm_text", "slm_text")):
        if k_meta in meta:
            rec[k_rec] = meta[k_meta]
    rec.setdefault("inputs", out.prompt if isinstance(out.prompt, str) else "")
    rec.setdefault("slm_text", "")
    for k in ("large_params", "small_params"):
        if k in meta:
            rec[k] = meta[k]
    if extra:
        rec.update(extra)
    return rec


def write_records(path: str, outputs, tokenizer=None) -> str:
    """Write FS-GEN records (``fsgen_engine.records.write_fsgen_records``); returns the writer's name,
    ``"compat"`` (the research format, as run summaries have always recorded it)."""
    write_fsgen_records(path, outputs, tokenizer=tokenizer)
    return "compat"
