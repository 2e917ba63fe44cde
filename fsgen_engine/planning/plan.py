"""A paper plan of a large model at tensor parallelism N beside a small model at TP=1 on rank 0.

Sharding is Megatron style (as the TP engine will shard): q/k/v and gate/up column-parallel, o and
down row-parallel, vocab-parallel embedding and LM head; norms replicated. When the model has fewer
KV heads than ranks each rank keeps one KV head (replicated, as vLLM does), else ``kv_heads / N``.

Per rank, for the large model (every rank holds the same amount):

    weights      = (L * layer_elems(N) + hidden + embed/N + head/N) * dtype_bytes   (head 0 when tied)
    read / step  = weights without the embedding gather (the tied embedding is read once as the head)
    kv / token   = 2 * L * kv_heads_per_rank * head_dim * kv_dtype_bytes
    all-reduce   = (2 * L + 1) messages of hidden * act_bytes per token (o_proj, down_proj, embedding)
    ring traffic = 2 (N-1)/N * all-reduce bytes;  logit gather = (N-1)/N * vocab * act_bytes

Rank 0 also holds the small model (weights and its KV for the same tokens). Decode time at batch 1:

    t_large(k tokens) = (read + context * kv) / copy_bw
                        + (k * (ring traffic + logit gather)) / link_bw + (2L + 2) * link_latency
                        + L * layer_overhead
    t_small           = (small read + context * small kv) / copy_bw + L_small * layer_overhead

``layer_overhead`` (default 0: bandwidth bound) is a fixed cost per decoder layer and step: kernel
launches and host work, which dominate a small model's step.

and per method, with ``f`` its expected large-call share (large calls / emitted tokens):
``large`` 1/t_large, ``small`` 1/t_small, ``oracle``/``contrastive`` 1/(t_small + f t_large),
``proxy`` 1/(2 t_small + f t_large) (small and small_ft, same shape), ``speculative`` with K drafts
per round and f rounds per token: 1/(f (K t_small + t_large(K+1))).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .hardware import GPU
from .shapes import ModelDims

# Expected large-call shares: the upper end of FS-GEN's collaboration frequency per method
# (methods doc section 4: oracle 0.10-0.17, contrastive 0.06-0.17, proxy 0.15-0.25), i.e. a router
# that calls System 2 about as often as the models disagree; speculative: one verification round per
# ~3.3 tokens (K=5 with ~80 % per-token acceptance). All are assumptions, set with --share.
DEFAULT_SHARES = {"large": 1.0, "small": 0.0, "oracle": 0.17, "contrastive": 0.17, "proxy": 0.25,
                  "speculative": 0.3}
MEMORY_UTILIZATION = 0.9  # of device memory for weights + KV; the rest for activations and workspace


def validate_tp(d: ModelDims, tp: int) -> None:
    """Raise a ValueError naming the model, the dimension and the fix when ``tp`` cannot shard ``d``."""
    if tp < 1:
        raise ValueError(f"--tp {tp}: must be at least 1")
    fix = "choose a --tp that divides it"
    for what, v in (("num_attention_heads", d.num_heads), ("vocab_size", d.vocab_size),
                    ("intermediate_size", d.intermediate_size)):
        if v % tp:
            raise ValueError(f"--tp {tp}: model {d.name!r} has {what}={v}, not divisible by {tp}; {fix}")
    if d.num_kv_heads >= tp and d.num_kv_heads % tp:
        raise ValueError(f"--tp {tp}: model {d.name!r} has num_key_value_heads={d.num_kv_heads}, "
                         f"not divisible by {tp}; {fix}")
    if d.num_kv_heads < tp and tp % d.num_kv_heads:
        raise ValueError(f"--tp {tp}: model {d.name!r} has num_key_value_heads={d.num_kv_heads} < {tp} and "
                         f"{tp} is not a multiple of it, so the KV heads cannot be replicated evenly; {fix}")


def kv_heads_per_rank(d: ModelDims, tp: int) -> int:
    return max(1, d.num_kv_heads // tp)


def layer_elems(d: ModelDims, tp: int) -> int:
    """Parameters of one decoder layer held by one rank."""
    h, hd = d.hidden_size, d.head_dim
    q = d.num_heads // tp * hd
    kv = kv_heads_per_rank(d, tp) * hd
    attn = h * q + 2 * h * kv + q * h + (q + 2 * kv if d.qkv_bias else 0)
    return attn + 3 * h * (d.intermediate_size // tp) + 2 * h


def weight_elems(d: ModelDims, tp: int) -> int:
    """Parameters one rank holds (embedding and, when untied, LM head split over the vocabulary)."""
    shard = d.vocab_size // tp * d.hidden_size
    return d.num_layers * layer_elems(d, tp) + d.hidden_size + shard * (1 if d.tied_embeddings else 2)


def read_elems(d: ModelDims, tp: int) -> int:
    """Parameters one decode step reads on one rank: the embedding is a gather of a few rows, so only
    the LM head's vocabulary shard counts (the same matrix when tied); see benchmark/bandwidth.py."""
    return d.num_layers * layer_elems(d, tp) + d.hidden_size + d.vocab_size // tp * d.hidden_size


def kv_bytes_token(d: ModelDims, tp: int, kv_bytes: int) -> int:
    return 2 * d.num_layers * kv_heads_per_rank(d, tp) * d.head_dim * kv_bytes


@dataclass
class RankPlan:
    rank: int
    holds: str
    weight_bytes: int
    kv_bytes_per_token: int
    kv_capacity_tokens: int          # negative free memory gives 0 and fits=False
    fits: bool
    allreduce_bytes_per_token: int   # payload summed over the token's all-reduces
    ring_bytes_per_token: float      # what this rank sends per token (ring all-reduce + logit gather)


@dataclass
class MethodPlan:
    method: str
    large_share: float
    seconds_per_token: float
    tokens_per_s: float


@dataclass
class Plan:
    large: str
    small: str
    gpu: str
    num_gpus: int
    tp: int
    dtype_bytes: int
    context: int
    num_draft_tokens: int
    t_large_s: float
    t_large_comm_s: float
    t_small_s: float
    usable_bytes: int
    ranks: list[RankPlan] = field(default_factory=list)
    methods: list[MethodPlan] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)

    @property
    def kv_capacity_tokens(self) -> int:
        """What the pair can hold: page tables are identical on every rank, so the smallest rank."""
        return min(r.kv_capacity_tokens for r in self.ranks)

    def to_dict(self) -> dict:
        return {**asdict(self), "kv_capacity_tokens": self.kv_capacity_tokens}


def make_plan(large: ModelDims, small: ModelDims, gpu: GPU, num_gpus: int, tp: int | None = None, *,
              dtype_bytes: int = 2, context: int = 1024, num_draft_tokens: int = 5,
              shares: dict[str, float] | None = None, layer_overhead_s: float = 0.0) -> Plan:
    """The plan of ``large`` at TP=``tp`` (default: every GPU) with ``small`` at TP=1 on rank 0."""
    tp = num_gpus if tp is None else int(tp)
    if tp > num_gpus:
        raise ValueError(f"--tp {tp}: more ranks than the {num_gpus} GPU(s) of --gpus; use --tp <= {num_gpus}")
    validate_tp(large, tp)
    if context < 0:
        raise ValueError(f"--context {context} must be >= 0")
    if layer_overhead_s < 0:
        raise ValueError(f"--layer-overhead-us {layer_overhead_s * 1e6:g} must be >= 0")
    if num_draft_tokens < 1:
        raise ValueError(f"--num-draft-tokens {num_draft_tokens} must be at least 1")
    shares = {**DEFAULT_SHARES, **(shares or {})}
    for m, f in shares.items():
        if m not in DEFAULT_SHARES:
            raise ValueError(f"--share {m}={f}: unknown method; use one of {', '.join(DEFAULT_SHARES)}")
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"--share {m}={f}: a large-call share is between 0 and 1")
    b = dtype_bytes
    w_large = weight_elems(large, tp) * b
    w_small = weight_elems(small, 1) * b
    kv_large = kv_bytes_token(large, tp, b)
    kv_small = kv_bytes_token(small, 1, b)
    n_ar = 2 * large.num_layers + 1
    ar_bytes = n_ar * large.hidden_size * b if tp > 1 else 0
    ring = 2 * (tp - 1) / tp * ar_bytes
    gather = (tp - 1) / tp * large.vocab_size * b
    usable = int(gpu.memory_bytes * MEMORY_UTILIZATION)

    ranks = []
    for r in range(tp):
        w = w_large + (w_small if r == 0 else 0)
        per_tok = kv_large + (kv_small if r == 0 else 0)
        free = usable - w
        ranks.append(RankPlan(r, f"{large.name} 1/{tp}" + (f" + {small.name}" if r == 0 else ""), w, per_tok,
                              max(0, free // per_tok), free > 0, ar_bytes, ring + gather))

    def t_large(k: int) -> tuple[float, float]:
        mem = (read_elems(large, tp) * b + context * kv_large) / gpu.copy_bw + large.num_layers * layer_overhead_s
        comm = (k * (ring + gather) / gpu.link_bw + (n_ar + 1) * gpu.link_latency) if tp > 1 else 0.0
        return mem + comm, comm

    tl, tl_comm = t_large(1)
    ts = (read_elems(small, 1) * b + context * kv_small) / gpu.copy_bw + small.num_layers * layer_overhead_s
    k = num_draft_tokens
    seconds = {"large": tl, "small": ts,
               "oracle": ts + shares["oracle"] * tl, "contrastive": ts + shares["contrastive"] * tl,
               "proxy": 2 * ts + shares["proxy"] * tl,
               "speculative": shares["speculative"] * (k * ts + t_large(k + 1)[0])}
    methods = [MethodPlan(m, shares[m], s, 1.0 / s) for m, s in seconds.items()]
    assumptions = [
        f"{gpu.name}: {gpu.memory_bytes / 2**30:.1f} GiB, {MEMORY_UTILIZATION:.0%} of it for weights + KV",
        f"copy bandwidth {gpu.copy_bw / 1e12:.2f} TB/s (datasheet {gpu.hbm_bw / 1e12:.2f} TB/s x 0.9)",
        f"link {gpu.link} at {gpu.link_bw / 1e9:.0f} GB/s per direction, {gpu.link_latency * 1e6:.0f} us per "
        "collective (assumed; --link-gbps, --allreduce-latency-us)",
        f"weights, activations and KV in {8 * b}-bit; batch 1 at a context of {context} tokens",
        "large-call shares: " + ", ".join(f"{m} {shares[m]:g}" for m in ("oracle", "contrastive", "proxy",
                                                                         "speculative"))
        + f" (assumed; --share METHOD=F); speculative K={k}",
        (f"{layer_overhead_s * 1e6:g} us per decoder layer and step of launch / host overhead (--layer-overhead-us)"
         if layer_overhead_s else "bandwidth bound: no launch or host overhead (--layer-overhead-us 0), so the "
         "small model's and the collaborative methods' figures are upper bounds"),
    ]
    return Plan(large.name, small.name, gpu.name, num_gpus, tp, b, context, k, tl, tl_comm, ts, usable, ranks,
                methods, assumptions)
