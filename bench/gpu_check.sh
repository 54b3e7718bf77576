#!/usr/bin/env bash
# The first run of vidops on a GPU machine, as one command:
#   bash bench/gpu_check.sh [--dry-run] [--no-build] [OUT_DIR]      (OUT_DIR default: $OUT, else ./gpu_check_out)
#
# On a machine with torch (CUDA) already installed and no network it
#   1. builds and installs vidops (pip install --no-build-isolation --no-deps .), unless vidops is
#      already importable with its compiled extension (then it says so and skips the build);
#   2. runs python -m vidops.selftest (every op and backend on the GPU against float64);
#   3. runs pytest -m gpu -x -q;
#   4. runs the benchmark at the GPU shapes in bfloat16 (python -m vidops.bench; JSON, CSV, PNG);
#   5. writes the kernel resource report (python -m vidops.kernel_report, sm_90, bfloat16);
# and puts every log and result into OUT_DIR, with summary.txt listing each step's status.
# Every step has a timeout, and all of them together stay within GPU_CHECK_BUDGET seconds
# (default 530: under 9 minutes).
#
# Dry run (--dry-run, or automatically when no CUDA device is visible to torch): the build and the
# CPU parts run (selftest --quick on the CPU, the benchmark's smoke shapes on the CPU, a one-op
# kernel report); the GPU parts are skipped with the reason printed.
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY=0
BUILD=1
DEST=""
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) DEST="$arg" ;;
    esac
done
DEST="${DEST:-${OUT:-$PWD/gpu_check_out}}"
mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
PY="${PYTHON:-python}"
BUDGET="${GPU_CHECK_BUDGET:-530}"
START=$(date +%s)
SUMMARY="$DEST/summary.txt"
: > "$SUMMARY"
FAILED=0

say() { echo "gpu_check: $*" | tee -a "$SUMMARY"; }

# run NAME MAX_SECONDS CMD...: log to $DEST/NAME.log, bounded by MAX_SECONDS and the budget left
run() {
    local name="$1" max="$2"; shift 2
    local left=$(( BUDGET - ($(date +%s) - START) ))
    local limit=$(( max < left ? max : left ))
    if [ "$limit" -lt 5 ]; then
        say "$name: SKIPPED (time budget of ${BUDGET} s used up)"
        FAILED=1
        return 1
    fi
    local t0=$(date +%s)
    echo "gpu_check: $name: running (timeout ${limit} s): $*"
    ( cd "$DEST" && timeout -k 10 "$limit" "$@" ) > "$DEST/$name.log" 2>&1
    local rc=$?
    local dt=$(( $(date +%s) - t0 ))
    if [ $rc -eq 0 ]; then
        say "$name: ok (${dt} s, log $name.log)"
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        say "$name: TIMEOUT after ${dt} s (log $name.log)"; FAILED=1
    else
        say "$name: FAILED rc=$rc (${dt} s, log $name.log)"; FAILED=1
    fi
    tail -n 25 "$DEST/$name.log" | sed "s/^/    [$name] /"
    return $rc
}

# ---- 0. the machine --------------------------------------------------------------------------
{
    date -u +"%Y-%m-%dT%H:%M:%SZ"
    uname -a
    (nvidia-smi 2>&1 || echo "nvidia-smi: not available") | head -n 20
    "$PY" -c "import sys, torch; print('python', sys.version.split()[0]); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available()); print('device', torch.cuda.get_device_name() if torch.cuda.is_available() else None)" 2>&1
    "$PY" -c "import triton; print('triton', triton.__version__)" 2>&1
    (nvcc --version 2>&1 | tail -n 2) || echo "nvcc: not found"
    git -C "$ROOT" rev-parse HEAD 2>/dev/null || true
} > "$DEST/environment.txt" 2>&1
GPU=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
if [ "$DRY" = 0 ] && [ "$GPU" != 1 ]; then
    DRY=1
    say "no CUDA device visible to torch: dry run (CPU parts only)"
fi
[ "$DRY" = 1 ] && say "dry run: GPU steps are skipped; CPU parts run" || say "GPU run on $("$PY" -c 'import torch; print(torch.cuda.get_device_name())')"

# ---- 1. build ----------------------------------------------------------------------------------
# Python steps run inside $DEST, so `import vidops` finds the installed package, not the checkout.
HAS_EXT='import vidops, vidops._ext as e; assert e.EXTENSION_LOADED, e.EXTENSION_ERROR; print(vidops.__file__, e.describe_build())'
if ( cd "$DEST" && "$PY" -c "$HAS_EXT" ) > "$DEST/build_probe.log" 2>&1; then
    say "build: SKIPPED: vidops is already importable with its compiled extension ($(tail -n 1 "$DEST/build_probe.log")); not rebuilding"
elif [ "$BUILD" = 0 ]; then
    say "build: SKIPPED (--no-build); using the source checkout $ROOT on PYTHONPATH"
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
else
    JOBS=$(nproc 2>/dev/null || echo 2)
    run build 330 env MAX_JOBS="$JOBS" NVCC_THREADS=2 "$PY" -m pip install --no-build-isolation --no-deps -v "$ROOT"
    ( cd "$DEST" && "$PY" -c "$HAS_EXT" ) >> "$DEST/build.log" 2>&1 || say "build: the installed vidops has no compiled extension (see build.log)"
fi
( cd "$DEST" && "$PY" -m vidops.info ) > "$DEST/info.txt" 2>&1 || true

# ---- 2. selftest ---------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
    run selftest 120 "$PY" -m vidops.selftest --device cpu --quick
else
    run selftest 150 "$PY" -m vidops.selftest --device cuda
fi

# ---- 3. GPU tests --------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
    say "pytest -m gpu: SKIPPED (dry run: no CUDA device)"
else
    # -P: the checkout is not put on sys.path, so the tests import the installed vidops
    run pytest_gpu 120 env -C "$ROOT" "$PY" -P -m pytest -m gpu -x -q -p no:cacheprovider "$ROOT/tests"
fi

# ---- 4. benchmark --------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
    say "benchmark at GPU shapes: SKIPPED (dry run); the smoke shapes run on the CPU instead"
    run bench 120 "$PY" -m vidops.bench --smoke --device cpu --no-compile --ops temporal_relation --out "$DEST/bench" --label "gpu_check dry run"
else
    run bench 200 "$PY" -m vidops.bench --device cuda --dtype bfloat16 --out "$DEST/bench" --label "gpu_check"
fi

# ---- 5. kernel resource report -------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
    # one op's Triton kernels; the CUDA part (cuobjdump over the whole build) is tested on its own
    run kernel_report 150 "$PY" -m vidops.kernel_report --arch sm_90 --ops temporal_relation --dtypes bfloat16 \
        --no-cuda --json "$DEST/kernel_report.json"
else
    run kernel_report 150 env VIDOPS_KERNEL_CACHE="$DEST/kernel_cache" "$PY" -m vidops.kernel_report --arch sm_90 \
        --quick --json "$DEST/kernel_report.json"
fi

say "done in $(( $(date +%s) - START )) s; results in $DEST"
[ "$FAILED" = 0 ] && say "all steps passed" || say "SOME STEPS FAILED (see above)"
exit $FAILED
