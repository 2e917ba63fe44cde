"""Run under torchrun by test_tp_torchrun.py: every rank builds the same Engine and calls generate;
rank 0 writes the outputs (JSON) to argv[3]; the other ranks must get []."""
import json
import sys

from fsgen_engine import Engine, MethodOptions

large, small, out = sys.argv[1], sys.argv[2], sys.argv[3]
PROMPTS = [[1, 5, 6, 7], [1, 9, 10, 11, 12, 13, 14, 15, 16]]
with Engine(large, small, tensor_parallel=2, num_pages=256, page_size=4, max_batch=8, device="cpu") as e:
    results = []
    for method in ("large", "speculative"):
        outs = e.generate(PROMPTS, method=method, options=MethodOptions(num_draft_tokens=3), max_new_tokens=8,
                          progress=False)
        results.append([o.token_ids for o in outs])
import torch.distributed as dist  # noqa: E402

if dist.get_rank() == 0:
    with open(out, "w") as f:
        json.dump(results, f)
else:
    assert results == [[], []], results
dist.destroy_process_group()
