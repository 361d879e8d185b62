#!/usr/bin/env bash
# Every check and benchmark that needs a GPU, in one run on a lent GPU box (no network there:
# its own torch, torchvision, onnxruntime, scikit-image; no Redis, Celery or Flask).
#
#   python -m bench.carry_weights pack ~/.cache/cutout/isnet-general-use.safetensors \
#       .carry/isnet-int8.safetensors                       # here, once (.carry/ is ignored)
#   bash bench/device_run.sh [SECONDS [STEPS]]              # there, with .carry carried
#
# Steps run in order of how much their answer matters, each cut off so the whole ends within
# SECONDS (default 420); STEPS picks some by number (default "1 2 3 4 5 6 7"). Tables go to
# $OUT/results.md, logs (and a Python stack on a crash) to $OUT/log.txt.
#
# Step 8 (issue 20, not in the default list: it wants a run of its own) trains the distilled
# student from a carried pack and times it: `bash bench/device_run.sh 600 8` with
# .carry/student-pack.npz beside the weights (see training/device_train.sh and docs/training.md).
set -u
budget=${1:-420}
steps=" ${2:-1 2 3 4 5 6 7} "
began=$(date +%s)
OUT=${OUT:-/tmp/cutout-device-out}
mkdir -p "$OUT"
results=$OUT/results.md
logs=$OUT/log.txt
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PYTHONFAULTHANDLER=1
export CUTOUT_DEVICE=cuda CUTOUT_MODEL_DIR=/tmp/cutout-models
mkdir -p "$CUTOUT_MODEL_DIR"

step() {  # step N NAME SECONDS COMMAND...: run with what is left of the budget, at most SECONDS
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
  local t0=$(date +%s.%N)
  timeout --kill-after=5 "$limit" "$@" >>"$results" 2>>"$logs"
  local rc=$?
  local took=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')")
  printf '\n(exit %s, %s s)\n' "$rc" "$took" >>"$results"
  echo "=== $name: exit $rc in ${took}s" | tee -a "$logs"
}

{
  echo "# Device run $(date -u +%FT%TZ)"
  echo
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import torch, torchvision, onnxruntime, PIL, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'torchvision', torchvision.__version__, 'onnxruntime', onnxruntime.__version__, 'Pillow', PIL.__version__)"
  echo "CPUs: $(nproc)"
} >>"$results" 2>>"$logs"

python3 -m bench.carry_weights unpack .carry/isnet-int8.safetensors \
  "$CUTOUT_MODEL_DIR/isnet-general-use.safetensors" >>"$logs" 2>&1 || {
  echo "cannot unpack the carried weights" | tee -a "$results"
  exit 1
}

# 1. The CUDA paths work (graphs, nvJPEG upright, device JPEG, pipeline, real OOM, NVML).
step 1 "pytest -m gpu" 150 python3 -m pytest --noconftest -p no:cacheprovider -W default -m gpu -q -rs \
  tests/test_gpu.py
# 2. The quality gate on this GPU (files the report `auto` reads).
step 2 "quality gate: half" 90 python3 -m workers.engines.check --engines half
# 3. Model only: eager and half (CUDA graphs) at batch 1..32, cold starts.
CUTOUT_FLUSH_EVERY=32 step 3 "engines: eager, half" 150 python3 -m bench.engines \
  --engines eager,half --batches 1,8,16,32 --repeats 20 --no-rembg --no-models
# 4. The worker's pipeline in process: one job, throughput with jpg+mask and webp, decode.
CUTOUT_ENGINE=half CUTOUT_FLUSH_EVERY=16 step 4 "pipeline in process" 150 python3 -m bench.pipeline \
  --jobs 64 --batch 16 --in-flight 3 --repeats 5
# 5. The four effects fused on the GPU against one at a time, and encoding.
step 5 "effects" 60 python3 -m bench.effects --device cuda --batch 8 --threads "$(nproc)" --repeats 5
# 6. AOTInductor fp16 at batch 16 and 1: compile once, gate, time, cold start from the package.
CUTOUT_ENGINE_SHAPES=1,16 step 6 "quality gate: compiled" 300 python3 -m workers.engines.check \
  --engines compiled
CUTOUT_ENGINE_SHAPES=1,16 step 7 "engines: compiled" 120 python3 -m bench.engines \
  --engines eager,half,compiled --batches 1,16 --repeats 20 --no-rembg --no-models
# 8. (issue 20) The distilled student: train from .carry/student-pack.npz by the clock,
# evaluate on its held-out part, export fp16, time it against IS-Net at batch 1 and 32. Its
# files come back in $OUT/student/ (training/device_train.sh says which).
step 8 "student: distil and time" 580 bash training/device_train.sh 560
[[ -f $OUT/student/speed.md ]] && [[ $steps == *" 8 "* ]] && cat "$OUT/student/speed.md" >>"$results"
echo "total $(($(date +%s) - began)) s" | tee -a "$results"
