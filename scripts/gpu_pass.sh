#!/usr/bin/env bash
# The GPU pass (issue 6) in one script, one stage per argument, so that a 10-minute device call runs
# one or two stages and prints a short summary last. Logs and results go to $OUT (the device tool's
# folder that comes back) or, elsewhere, to bench/results/gpu_run/.
#
#   bash scripts/gpu_pass.sh env build test            # first call: versions, CUDA build, whole suite
#   bash scripts/gpu_pass.sh kernels attention         # op and paged-attention micro-benchmarks
#   bash scripts/gpu_pass.sh e2e graphs                # tokens/s vs HF (graphs on), then graphs off
#
# Stages: env build test kernels attention e2e graphs profile. The device machine's python3 already
# has torch, triton, transformers, pytest-xdist/benchmark and hypothesis; the embedded SmolLM2 model
# (94 MB) is too large to carry there, so the tests that need it skip.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu_run}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
SUMMARY="$OUT/summary.txt"
note() { echo "$*" | tee -a "$SUMMARY"; }
gpu_tag() { "$PY" - <<'EOF'
import torch
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
print("".join(c for c in name.lower().replace("nvidia", "") if c.isalnum()) or "cpu")
EOF
}

stage_env() {
    { nvidia-smi 2>&1 | head -15; "$PY" -c "import sys, torch, triton, transformers; print(sys.version); \
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, \
'transformers', transformers.__version__); print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
      git log -1 --format='commit %H' 2>/dev/null; } > "$OUT/env.txt" 2>&1
    note "env: $(tail -n 3 "$OUT/env.txt" | tr '\n' ' ')"
}

stage_build() {
    local t0=$SECONDS
    FSGEN_BUILD_CUDA=${FSGEN_BUILD_CUDA:-1} FSGEN_CUDA_ARCHS=${FSGEN_CUDA_ARCHS:-90} \
        "$PY" -m pip install --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1
    local rc=$?
    note "build: rc=$rc in $((SECONDS - t0)) s; $("$PY" -c 'import fsgen_engine._C as C; \
print("native functions:", len([n for n in dir(C) if not n.startswith("_")]), "cuda:", \
sorted(n for n in dir(C) if n.endswith("_cuda")))' 2>&1 | tail -n 1)"
}

stage_test() {
    local t0=$SECONDS
    "$PY" -m pytest -q -n "${FSGEN_TEST_WORKERS:-8}" -p no:cacheprovider tests --junitxml="$OUT/tests.xml" \
        > "$OUT/tests.log" 2>&1
    note "tests: rc=$? in $((SECONDS - t0)) s: $(tail -n 1 "$OUT/tests.log")"
    grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -n 20 | tee -a "$SUMMARY"
}

stage_kernels() {
    local tag json
    tag=$(gpu_tag); json="$OUT/kernels_${tag}.json"
    "$PY" -m pytest -q -p no:cacheprovider bench/kernels --benchmark-only --benchmark-json="$json" \
        --ignore=bench/kernels/bench_paged_attention.py > "$OUT/kernels.log" 2>&1
    "$PY" bench/summarize_kernels.py "$json" -o "$OUT/kernels_${tag}.md" --probe-env \
        --meta "command=bash scripts/gpu_pass.sh kernels" >> "$OUT/kernels.log" 2>&1
    note "kernels: $(tail -n 1 "$OUT/kernels.log")"
}

stage_attention() {
    local tag
    tag=$(gpu_tag)
    "$PY" -m pytest -q -p no:cacheprovider bench/kernels/bench_paged_attention.py --benchmark-only \
        --benchmark-json="$OUT/paged_attention_${tag}.json" > "$OUT/attention.log" 2>&1
    note "attention: $(tail -n 1 "$OUT/attention.log")"
}

e2e() {  # e2e TAG EXTRA-ARGS...: random-weight Qwen2.5 shapes, bf16, batch 1 and 8
    local tag=$1; shift
    "$PY" -m fsgen_engine.cli bench --models qwen2.5-7b+qwen2.5-0.5b qwen2.5-7b+early_exit:4 \
        --batch-sizes 1 8 --max-new-tokens "${FSGEN_E2E_TOKENS:-128}" --runs 3 --prompt-len 128 \
        --results-dir "$OUT" --tag "$tag" "$@" > "$OUT/$tag.log" 2>&1
    note "$tag: rc=$? (table in $OUT/$tag.log)"
    tail -n 40 "$OUT/$tag.log"
}

stage_e2e() { e2e "$(gpu_tag)_qwen_graphs_on" --cuda-graphs on; }
stage_graphs() { e2e "$(gpu_tag)_qwen_graphs_off" --cuda-graphs off --baselines --methods large speculative; }

stage_profile() {  # where one decode step's time goes (torch profiler, top ops by CUDA time)
    "$PY" bench/profile_step.py --out "$OUT/profile_step.txt" > "$OUT/profile.log" 2>&1
    note "profile: rc=$?"
    head -n 30 "$OUT/profile_step.txt" 2>/dev/null
}

[ $# -gt 0 ] || { sed -n 2,12p "$0"; exit 2; }
for s in "$@"; do
    if declare -F "stage_$s" > /dev/null; then "stage_$s"; else echo "unknown stage: $s" >&2; exit 2; fi
done
echo "----- summary ($OUT/summary.txt)"
cat "$SUMMARY"
