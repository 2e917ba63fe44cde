"""Arguments shared by ``fsgen eval`` and ``fsgen sweep``: models, engine options, data set, decoding."""
from __future__ import annotations

import argparse

from .datasets import DATASETS


def add_common(parser: argparse.ArgumentParser, *, models_required: bool = True) -> None:
    g = parser.add_argument_group("models and engine")
    g.add_argument("--large", required=models_required, help="large model: HF folder, GGUF file or early_exit:N")
    g.add_argument("--small", required=models_required, help="small model: HF folder, GGUF file or early_exit:N")
    g.add_argument("--small-ft", default=None, help="small fine-tuned model (method proxy)")
    g.add_argument("--device", default=None, help="cpu or cuda (engine default when omitted)")
    g.add_argument("--dtype", default=None, help="float32, float16 or bfloat16 (engine default when omitted)")
    g.add_argument("--kv-memory", default=None, help="KV pool size (engine default when omitted)")
    g.add_argument("--max-batch", type=int, default=None, help="engine batch limit")
    g.add_argument("--page-size", type=int, default=None, help="KV page size")
    g.add_argument("--tp", type=int, default=None, metavar="N", help="tensor-parallel ranks of the large model (System 2): worker processes, NCCL on GPUs, gloo on CPU")
    g.add_argument("--small-tp", type=int, default=None, metavar="M", help="ranks of System 1: 1 (default: whole on rank 0, no communication) or --tp (early_exit:N: --tp)")
    g.add_argument("--large-params", default=None, help="nominal large parameter count for scaling-law meta (e.g. 7B)")
    g.add_argument("--small-params", default=None, help="nominal small parameter count for scaling-law meta (e.g. 0.5B)")
    d = parser.add_argument_group("data")
    d.add_argument("--dataset", required=True, choices=DATASETS)
    d.add_argument("--data", required=True, metavar="FILE", help="the data set's JSONL file")
    d.add_argument("--fewshot", default=None, metavar="FILE",
                   help="gsm8k few-shot prompt (default: gsm8k_8shot_prompt.txt next to --data, if present)")
    d.add_argument("--n", type=int, default=None, help="number of examples to sample (default: all)")
    d.add_argument("--seed", type=int, default=0, help="sampling seed for the examples and for decoding")
    d.add_argument("--batch-size", type=int, default=16, help="prompts per generate call")
    d.add_argument("--mbpp-timeout", type=float, default=10.0, help="seconds per MBPP program in the sandbox")
    d.add_argument("--unsafe-exec", action="store_true",
                   help="run model-written MBPP code even where the OS sandbox (user namespaces) cannot be set up: "
                        "no isolation at all, only in a disposable machine or container")
    s = parser.add_argument_group("decoding")
    s.add_argument("--max-new-tokens", type=int, default=512)
    s.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (FS-GEN)")
    s.add_argument("--top-k", type=int, default=None)
    s.add_argument("--top-p", type=float, default=None)
    s.add_argument("--min-p", type=float, default=None)
    s.add_argument("--alpha", type=float, default=None, help="contrastive plausibility / proxy strength")
    s.add_argument("--beta", type=float, default=None, help="contrastive weight")
    s.add_argument("--preset", default=None, help="contrastive preset (fsgen or obrien)")
    s.add_argument("--num-draft-tokens", type=int, default=None, help="speculative K")
    s.add_argument("--chat", action="store_true", help="wrap prompts in the chat template (mtbench always does)")
    s.add_argument("--out", metavar="DIR", default=None, help="write traces, FS-GEN records, summary, plots here")


def engine_kwargs(args) -> dict:
    """The Engine options given on the command line (the engine's defaults for the others)."""
    from fsgen_engine.tp.checks import tp_engine_kwargs

    kw = {k: getattr(args, k) for k in ("device", "dtype", "kv_memory", "max_batch", "page_size")
          if getattr(args, k, None) is not None}
    kw.update(tp_engine_kwargs(getattr(args, "small", None), getattr(args, "tp", None), getattr(args, "small_tp", None)))
    return kw


def build_engine(args):
    from fsgen_engine.engine import Engine

    return Engine(args.large, args.small, args.small_ft, **engine_kwargs(args))


def add_ray(parser: argparse.ArgumentParser) -> None:
    r = parser.add_argument_group("Ray (pip install .[distributed])")
    r.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run the jobs on Ray (actors reserving one GPU per job, or CPUs): on the cluster at ADDRESS "
                        "(auto, or the head node's IP:6379), or on a local Ray instance started for this run when "
                        "ADDRESS is omitted; jobs already finished in --out are skipped (resume)")
    r.add_argument("--ray-retries", type=int, default=1, help="times a failed job is resubmitted (default 1)")
    r.add_argument("--ray-cpus-per-job", type=float, default=1.0, help="CPUs each job reserves")


def make_config(args, method: str = "oracle", router: str = "always"):
    from .runner import EvalConfig

    unsafe = bool(getattr(args, "unsafe_exec", False))
    if args.dataset == "mbpp" and not unsafe:  # fail before loading models, not after generating
        from .sandbox import unavailable_message, isolation_error

        reason = isolation_error()
        if reason is not None:
            raise ValueError(unavailable_message(reason))

    gen = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "min_p": args.min_p,
           "alpha": args.alpha, "beta": args.beta, "preset": args.preset,
           "num_draft_tokens": args.num_draft_tokens, "seed": args.seed}
    return EvalConfig(dataset=args.dataset, data=args.data, method=method, router=router, n=args.n, seed=args.seed,
                      max_new_tokens=args.max_new_tokens, fewshot=args.fewshot, chat=args.chat,
                      batch_size=args.batch_size, gen_kwargs=gen, large=args.large, small=args.small,
                      large_params=args.large_params, small_params=args.small_params,
                      mbpp_timeout=args.mbpp_timeout, unsafe_exec=unsafe)
