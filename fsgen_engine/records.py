"""The FS-GEN research code's JSONL record format (methods doc section 5): writer and reader.

Below both ``compat`` (the research API) and ``eval`` (data-set runs), which write these records.

One JSON object per line per sample: the per-sample dict of ``FSGenOpenSource.generate_text``
(``text, tokens, topK, slm_logits_prob, llm_logits_prob, if_match_now, total_tokens_num,
latent_tokens_num, mismatch_tokens_num``) plus the data-set fields ``id, dataset, inputs, correct,
llm_name, slm_name, slm_text, method_info``.
"""
from __future__ import annotations

import json

RESULT_KEYS = ("text", "tokens", "topK", "slm_logits_prob", "llm_logits_prob", "if_match_now",
               "total_tokens_num", "latent_tokens_num", "mismatch_tokens_num")
DATASET_KEYS = ("id", "dataset", "inputs", "correct", "llm_name", "slm_name", "slm_text", "method_info")
# data-set fields that may be given per record (a list/tuple with one value per record)
PER_RECORD_KEYS = ("id", "inputs", "correct", "slm_text")
_DEFAULTS = {"dataset": "", "inputs": "", "correct": None, "llm_name": "", "slm_name": "", "slm_text": "",
             "method_info": []}
ENGINE_TO_RESEARCH_METHOD = {"oracle": "OracleDecoding", "contrastive": "ContrastiveDecoding",
                             "speculative": "SpeculativeDecoding", "proxy": "ProxyFineTuning"}
ENGINE_TO_RESEARCH_ROUTER = {"always": "normal", "never": "none", "max_prob": "threshold",
                             "margin": "delta_threshold", "learned": "svm"}


def record_from_output(out, tokenizer=None) -> dict:
    """A research record for one engine ``GenerationOutput``; every count and ``if_match_now`` is exact.

    Distributions: when the trace has top-K columns (``generate(..., trace_topk=K)``), ``topK`` is K,
    ``slm_logits_prob`` holds one entry per emitted token in the research layout ``[[probs], ids]``
    (``[[[]], []]`` for a step where System 1 gave no distribution, e.g. a speculative bonus token) and
    ``llm_logits_prob`` one entry per fired (``routed``) step, from the large model's own logits.
    Without them ``topK`` is 0 and both lists are empty. Data-set fields come from ``out.meta`` where
    present."""
    cols = out.trace.columns
    flags = [int(t != s) for r, t, s in zip(cols["routed"], cols["token"], cols["small_argmax"]) if r]
    if tokenizer is not None:
        tokens = [tokenizer.decode([t], skip_special_tokens=False) for t in out.token_ids]
    else:
        tokens = [str(t) for t in out.token_ids]
    st = out.stats
    rec = {"text": out.text, "tokens": tokens, **_distributions(out), "if_match_now": flags,
           "total_tokens_num": st.total_tokens or len(out.token_ids), "latent_tokens_num": st.large_calls,
           "mismatch_tokens_num": st.mismatches}
    meta = out.meta or {}
    for k_rec, k_meta in (("id", "id"), ("dataset", "dataset"), ("inputs", "inputs"), ("correct", "correct"),
                          ("llm_name", "large"), ("slm_name", "small"), ("slm_text", "slm_text")):
        if k_meta in meta:
            rec[k_rec] = meta[k_meta]
    if "inputs" not in rec and isinstance(out.prompt, str):
        rec["inputs"] = out.prompt
    rec["method_info"] = research_method_info(out.method, out.router, meta.get("gen_kwargs"))
    return rec


def _distributions(out) -> dict:
    """``topK``, ``slm_logits_prob`` and ``llm_logits_prob`` of a record from the trace's top-K columns."""
    tr = out.trace
    if not tr.has_topk:
        return {"topK": 0, "slm_logits_prob": [], "llm_logits_prob": []}
    cols, n = tr.columns, len(tr)
    empty = [[] for _ in range(n)]

    def entries(model: str) -> list:
        # research layout per step: [[[p_1..p_k]], [id_1..id_k]] (an empty step: [[[]], []])
        return [[[list(p)], list(i)] for p, i in zip(cols.get(f"{model}_topk_probs", empty),
                                                     cols.get(f"{model}_topk_ids", empty))]

    # K as generated (meta); a trace without it falls back to its longest recorded row
    rows = cols.get("small_topk_probs", []) + cols.get("large_topk_probs", [])
    k = (out.meta or {}).get("trace_topk") or max((len(p) for p in rows), default=0)
    return {"topK": int(k), "slm_logits_prob": entries("small"),
            "llm_logits_prob": [e for e, r in zip(entries("large"), cols["routed"]) if r]}


def _as_record(r, tokenizer) -> dict:
    if isinstance(r, dict):
        return dict(r)
    if hasattr(r, "trace") and hasattr(r, "token_ids"):
        return record_from_output(r, tokenizer)
    raise ValueError(f"record {type(r).__name__} is neither a generate_text dict nor a GenerationOutput")


def write_fsgen_records(path, records, *, tokenizer=None, **dataset_fields) -> int:
    """Write research records (JSONL) to ``path``; returns the number written.

    ``records``: ``generate_text`` dicts or engine ``GenerationOutput``s (see :func:`record_from_output`;
    ``tokenizer`` decodes their token strings). ``dataset_fields``: any of ``DATASET_KEYS``; a value
    applies to every record, except ``id``/``inputs``/``correct``/``slm_text`` given as a list or
    tuple, which holds one value per record. Fields neither given nor in a record get defaults
    (``id`` = the record's index)."""
    unknown = sorted(set(dataset_fields) - set(DATASET_KEYS))
    if unknown:
        raise ValueError(f"unknown record fields {unknown}; the data-set fields are {list(DATASET_KEYS)}")
    recs = [_as_record(r, tokenizer) for r in records]
    for k in PER_RECORD_KEYS:
        v = dataset_fields.get(k)
        if isinstance(v, (list, tuple)) and len(v) != len(recs):
            raise ValueError(f"{k} has {len(v)} values for {len(recs)} records: give one per record or a scalar")
    with open(path, "w", encoding="utf-8") as f:
        for i, rec in enumerate(recs):
            for k in DATASET_KEYS:
                if k in dataset_fields:
                    v = dataset_fields[k]
                    rec[k] = v[i] if k in PER_RECORD_KEYS and isinstance(v, (list, tuple)) else v
                elif k not in rec:
                    rec[k] = i if k == "id" else _DEFAULTS[k]
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return len(recs)


def read_fsgen_records(path) -> list[dict]:
    """Read a research record file; checks each line is a record (has the count keys)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            obj = json.loads(line)
            if not isinstance(obj, dict) or "total_tokens_num" not in obj:
                raise ValueError(f"{path}:{n} is not an FS-GEN record (no 'total_tokens_num'); "
                                 "engine trace files are read with fsgen_engine.outputs.read_traces")
            out.append(obj)
    return out


def research_method_info(method: str, router: str, kwargs: dict | None = None) -> list:
    """The research records' ``method_info``: ``[router_method dict, collabrate_method dict]``."""
    kwargs = kwargs or {}
    base, _, arg = (router or "").partition(":")
    rname = ENGINE_TO_RESEARCH_ROUTER.get(base, base)
    rdict: dict = {"method": rname}
    if base == "max_prob" and arg:
        rdict["threshold"] = float(arg)
    elif base == "margin" and arg:
        rdict["threshold"] = float(arg) / 2.0
    elif base == "learned" and arg:
        rdict["trained_model_path"] = arg
    mname = ENGINE_TO_RESEARCH_METHOD.get(method, method)
    mdict: dict = {"method": mname}
    if method == "contrastive":
        mdict.update(alpha=kwargs.get("alpha", 0.1), beta=kwargs.get("beta", 0.5))
    elif method == "proxy":
        mdict.update(alpha=kwargs.get("alpha", 1.0))
    elif method == "speculative":
        mdict.update(K=kwargs.get("num_draft_tokens", 5))
    return [rdict, mdict]
