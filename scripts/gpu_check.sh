#!/usr/bin/env bash
# The ten-minute GPU check (issue 10): one command, on one H100/H200, from a fresh checkout, that
# returns the most verified signal a short device lease allows and prints a short table last.
#
#   bash scripts/gpu_check.sh                    # every stage: env build ops engine suite kernels e2e
#   bash scripts/gpu_check.sh build ops kernels  # chosen stages, in that order
#
# FSGEN_GPU_CHECK_BUDGET (seconds, default 510) bounds the whole run: each stage gets its own limit,
# cut to what is left of the budget, and the script goes on to the next stage after a failure or a
# time-out, so one call always returns the whole table. Logs and JSON go to $OUT (the device tool's
# folder that comes back) or, elsewhere, to bench/results/gpu_check/. FSGEN_COMMIT names the commit
# when the tree travels without .git.
#
# The GPU machine's stack is used as it is (its python3 with torch, Triton, transformers, pytest,
# xdist); nothing is installed but this package, built with --no-build-isolation for sm_90 only.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
BUDGET=${FSGEN_GPU_CHECK_BUDGET:-510}
WORKERS=${FSGEN_TEST_WORKERS:-12}
export PYTHONUNBUFFERED=1
export FSGEN_COMMIT=${FSGEN_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
T0=$SECONDS
TABLE="$OUT/summary.txt"
: > "$TABLE"

row() { printf '%-8s %-7s %5ss  %s\n' "$1" "$2" "$3" "$4" | tee -a "$TABLE" >&2; }

# stage NAME LIMIT_S COMMAND...: run with a time limit cut to the budget left; never stops the script.
stage() {
    local name=$1 limit=$2; shift 2
    local left=$((BUDGET - (SECONDS - T0) - 5))
    if [ "$left" -lt 15 ]; then row "$name" skipped 0 "budget spent"; return 0; fi
    [ "$limit" -gt "$left" ] && limit=$left
    local t=$SECONDS
    echo "===== $name (limit ${limit}s)" >&2
    timeout -k 5 "$limit" bash -c "$1" > "$OUT/$name.log" 2>&1
    local rc=$?
    local status=ok
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && status=timeout
    [ $rc -ne 0 ] && [ "$status" = ok ] && status="rc=$rc"
    row "$name" "$status" $((SECONDS - t)) "$(summary_of "$name")"
    return 0
}

summary_of() {  # one line per stage for the table
    local log="$OUT/$1.log"
    case $1 in
        ops|engine|suite) tail -n 1 "$log" | tr -s '= ' ' ' ;;
        build) grep -E "native functions|Error|error:" "$log" | tail -n 1 ;;
        *) tail -n 1 "$log" ;;
    esac
}

s_env() {
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1 | head -3
    "$PY" - <<'EOF'
import platform, torch, triton, transformers
p = torch.cuda.get_device_properties(0) if torch.cuda.is_available() else None
print(f"python {platform.python_version()} torch {torch.__version__} (cuda {torch.version.cuda}) triton "
      f"{triton.__version__} transformers {transformers.__version__}")
if p:
    print(f"{p.name}: {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB, cc {p.major}.{p.minor}")
EOF
    echo "commit $FSGEN_COMMIT"
}

s_build() {
    FSGEN_BUILD_CUDA=1 FSGEN_CUDA_ARCHS=${FSGEN_CUDA_ARCHS:-90} \
        "$PY" -m pip install --no-build-isolation --no-deps --no-index -e . || return $?
    "$PY" -c 'import fsgen_engine._C as C; names = [n for n in dir(C) if not n.startswith("_")]; \
print("native functions:", len(names), "cuda:", sorted(n for n in names if n.endswith("_cuda")))'
}

# Every op test on the GPU backends (cuda from _C, Triton compiled for the GPU, reference on CUDA).
s_ops() {
    "$PY" -m pytest -q -p no:cacheprovider -n "$WORKERS" tests/ops -k "cuda and not emulated" -rfE \
        --junitxml="$OUT/ops.xml"
}

# The engine on CUDA over the real paged models, CUDA graphs on and off, and graph replay vs eager.
s_engine() {
    "$PY" -m pytest -q -p no:cacheprovider -n 4 -rfE tests/engine/test_engine_devices.py \
        tests/engine/test_cuda_graphs.py -k "cuda" --junitxml="$OUT/engine.xml"
}

# The rest of the suite under this machine's stack (its torch, Triton, transformers versions).
s_suite() {
    "$PY" -m pytest -q -p no:cacheprovider -n "$WORKERS" -rfE tests --ignore=tests/toolchain \
        -k "not cuda" -m "not slow" --junitxml="$OUT/suite.xml"
}

s_kernels() { "$PY" bench/gpu_kernels.py --out "$OUT/kernels_gpu_check.json"; }

s_e2e() { "$PY" bench/e2e/gpu_e2e.py --out "$OUT/e2e_gpu_check.json"; }

STAGES=("$@")
[ ${#STAGES[@]} -gt 0 ] || STAGES=(env build ops engine kernels e2e suite)
declare -A LIMIT=([env]=20 [build]=120 [ops]=110 [engine]=90 [suite]=150 [kernels]=110 [e2e]=130)
for s in "${STAGES[@]}"; do
    if ! declare -F "s_$s" > /dev/null; then echo "unknown stage: $s (stages: ${!LIMIT[*]})" >&2; exit 2; fi
done
export PY OUT WORKERS
for s in "${STAGES[@]}"; do export -f "s_$s"; done
for s in "${STAGES[@]}"; do stage "$s" "${LIMIT[$s]}" "s_$s"; done

# The table last: the device call returns only the end of the output.
echo
echo "----- logs in $OUT; failures:"
for s in ops engine suite; do
    [ -f "$OUT/$s.log" ] && grep -E "^(FAILED|ERROR) " "$OUT/$s.log" | head -n 8
done
[ -f "$OUT/kernels.log" ] && grep -A200 "^op " "$OUT/kernels.log" | head -n 50
[ -f "$OUT/e2e.log" ] && tail -n 5 "$OUT/e2e.log"
echo "----- stage  status   time  result (total $((SECONDS - T0)) s of budget $BUDGET s)"
cat "$TABLE"
