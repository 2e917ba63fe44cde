"""Load trace files (our JSONL) and FS-GEN record files into one per-sample view.

Every analysis works on :class:`Sample`: counts (section 4 of the methods doc), the relative
positions of mismatches and per-step System-1 statistics labelled match / mismatch. A file's format
is detected per line: FS-GEN records carry ``if_match_now`` / ``total_tokens_num``, our traces carry
``trace`` (``GenerationOutput.to_dict()``).

FS-GEN records store ``if_match_now`` for fired steps only, without their positions; positions and
per-step labels are therefore only recoverable when every step fired (router ``normal``, the
setting of every FS-GEN collaboration figure). Other records contribute counts only.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

# meta keys used to group samples (first one present wins for each role)
PAIR_KEYS = ("model_pair", "pair")
LARGE_KEYS = ("large", "llm_name", "large_model")
SMALL_KEYS = ("small", "slm_name", "small_model")
DATASET_KEYS = ("dataset",)


@dataclass
class Sample:
    """One generation.

    total_tokens / large_calls / mismatches: counts as in GenerationStats.
    positions: relative position ``index / length`` of each mismatch (None when unknown).
    entropy, max_prob, margin: float arrays [n_labelled] of System-1 statistics at labelled steps
        (routed steps where System 1 ran), ``mismatch`` the bool array [n_labelled] of labels.
    meta: merged metadata (model names, data set, parameter counts, ...); ``file`` the source path.
    """

    total_tokens: int
    large_calls: int
    mismatches: int
    positions: list[float] | None
    entropy: np.ndarray
    max_prob: np.ndarray
    margin: np.ndarray
    mismatch: np.ndarray
    meta: dict = field(default_factory=dict)
    file: str = ""
    fmt: str = "trace"

    @property
    def pair(self) -> str:
        for k in PAIR_KEYS:
            if self.meta.get(k):
                return str(self.meta[k])
        large = next((self.meta[k] for k in LARGE_KEYS if self.meta.get(k)), None)
        small = next((self.meta[k] for k in SMALL_KEYS if self.meta.get(k)), None)
        if large or small:
            return f"{_short(large)} / {_short(small)}"
        return ""

    @property
    def dataset(self) -> str:
        return str(next((self.meta[k] for k in DATASET_KEYS if self.meta.get(k)), ""))

    def group(self) -> str:
        """Group label: model pair and data set when the metadata has them, else the file name."""
        parts = [p for p in (self.pair, self.dataset) if p]
        return " | ".join(parts) if parts else os.path.basename(self.file)


def _short(name) -> str:
    if name is None:
        return "?"
    s = str(name).rstrip("/")
    return os.path.basename(s) or s


def is_fsgen_record(obj: dict) -> bool:
    return "if_match_now" in obj or "total_tokens_num" in obj


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=np.float64)


def sample_from_trace(obj: dict, file: str = "") -> Sample:
    from fsgen_engine.outputs import GenerationOutput

    out = GenerationOutput.from_dict(obj)
    cols = out.trace.columns
    n = len(out.trace)
    st = out.stats
    total = st.total_tokens or n
    routed = np.asarray(cols["routed"], dtype=bool) if n else np.zeros(0, bool)
    tok = np.asarray(cols["token"], dtype=np.int64) if n else np.zeros(0, np.int64)
    sarg = np.asarray(cols["small_argmax"], dtype=np.int64) if n else np.zeros(0, np.int64)
    ent = np.asarray(cols["small_entropy"], dtype=np.float64) if n else _empty()
    # A step is a labelled System-2 step when it was routed and System 1 ran (argmax known).
    ran = sarg >= 0
    labelled = routed & ran
    mism = tok != sarg
    # Speculative: rejected drafts are the mismatches, the large token replaced the small argmax.
    mismatch_steps = np.nonzero(labelled & mism)[0]
    positions = [float(i) / n for i in mismatch_steps] if n else []
    large_calls = st.large_calls if st.total_tokens else int(routed.sum())
    mismatches = st.mismatches if st.total_tokens else int((labelled & mism).sum())
    meta = dict(out.meta or {})
    meta.setdefault("method", out.method)
    meta.setdefault("router", out.router)
    return Sample(
        total_tokens=int(total),
        large_calls=int(large_calls),
        mismatches=int(mismatches),
        positions=positions,
        entropy=ent[labelled],
        max_prob=np.asarray(cols["small_max_prob"], dtype=np.float64)[labelled] if n else _empty(),
        margin=np.asarray(cols["small_margin"], dtype=np.float64)[labelled] if n else _empty(),
        mismatch=mism[labelled],
        meta=meta,
        file=file,
        fmt="trace",
    )


def _topk_probs(step) -> list[float]:
    """The top-k probabilities of one ``slm_logits_prob`` entry (``[[probs], ids]`` with any extra
    nesting around the probabilities)."""
    probs = step[0] if isinstance(step, (list, tuple)) and step else step
    while isinstance(probs, (list, tuple)) and probs and isinstance(probs[0], (list, tuple)):
        probs = probs[0]
    return [float(p) for p in probs] if isinstance(probs, (list, tuple)) else []


def topk_stats(probs: list[float]) -> tuple[float, float, float]:
    """(entropy, max_prob, margin) from sorted-or-not top-k probabilities. The entropy is over the
    top-k mass plus one lumped remainder bucket, a lower bound of the full entropy."""
    if not probs:
        return (math.nan, math.nan, math.nan)
    p = np.sort(np.clip(np.asarray(probs, dtype=np.float64), 0.0, 1.0))[::-1]
    rest = max(0.0, 1.0 - float(p.sum()))
    q = np.append(p, rest)
    q = q[q > 0]
    ent = float(-(q * np.log(q)).sum())
    margin = float(p[0] - p[1]) if len(p) > 1 else float(p[0])
    return ent, float(p[0]), margin


def sample_from_record(obj: dict, file: str = "") -> Sample:
    flags = [int(x) for x in obj.get("if_match_now", [])]  # 1 = mismatch (inverted name)
    total = int(obj.get("total_tokens_num", len(obj.get("tokens", [])) or len(flags)))
    large = int(obj.get("latent_tokens_num", len(flags)))
    mism = int(obj.get("mismatch_tokens_num", sum(flags)))
    every_step = bool(flags) and len(flags) == total and large == total
    positions = [i / total for i, f in enumerate(flags) if f] if every_step else (None if flags else [])
    slm = obj.get("slm_logits_prob") or []
    if every_step and len(slm) >= total:
        stats = np.array([topk_stats(_topk_probs(s)) for s in slm[:total]], dtype=np.float64)
        ent, mp, mg = stats[:, 0], stats[:, 1], stats[:, 2]
        labels = np.asarray(flags, dtype=bool)
    else:
        ent = mp = mg = _empty()
        labels = np.zeros(0, bool)
    meta = {k: obj[k] for k in ("id", "dataset", "llm_name", "slm_name", "method_info", "correct",
                                "large_params", "small_params") if k in obj}
    if isinstance(obj.get("meta"), dict):
        meta.update(obj["meta"])
    return Sample(total, large, mism, positions, ent, mp, mg, labels, meta, file, "fsgen")


def load_samples(paths) -> list[Sample]:
    """Read every line of every file; raises ValueError naming the file and line on bad input."""
    samples: list[Sample] = []
    for path in paths:
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"trace/record file {path!r} does not exist")
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: not JSON ({exc}); expected one JSON object per line") from None
                if is_fsgen_record(obj):
                    samples.append(sample_from_record(obj, path))
                elif "trace" in obj:
                    samples.append(sample_from_trace(obj, path))
                else:
                    raise ValueError(
                        f"{path}:{lineno}: neither a trace (no 'trace' key) nor an FS-GEN record "
                        "(no 'if_match_now'/'total_tokens_num'); pass files written by fsgen generate/eval"
                    )
    if not samples:
        raise ValueError(f"no samples in {list(map(str, paths))}")
    return samples


def group_samples(samples: list[Sample], by: str = "auto") -> dict[str, list[Sample]]:
    """Group by ``auto`` (model pair | data set from meta, else file), ``file``, or a meta key."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        if by == "auto":
            key = s.group()
        elif by == "file":
            key = os.path.basename(s.file)
        else:
            key = str(s.meta.get(by, "?"))
        groups.setdefault(key, []).append(s)
    return groups
