#!/usr/bin/env bash
# The student's GPU run: train from a carried pack, time it against IS-Net, bring it back.
# Called by bench/device_run.sh (step 8) or alone, on a box with no teacher photos and no network:
#
#   python -m training.distill --photos DIR --out OUT --pack-only --pack-side 416 --pack-quality 80 --defer-labels
#   cp OUT/pack.npz .carry/student-pack.npz                  # carried (.carry/ is ignored)
#   bash training/device_train.sh [SECONDS]                  # there (default 540)
#
# Photos packed unlabelled are labelled first by IS-Net from $CUTOUT_MODEL_DIR (device_run.sh
# unpacks the carried weights there) on `half`.
# Trains for what SECONDS leaves after the benchmark's reserve (the learning rate anneals by
# the clock), evaluates on the pack's held-out photos and composites, exports the fp16 student,
# then times the student and IS-Net (eager and half, batch 1 and 32) on this GPU.
# Everything lands in $OUT/student/: report.json, cutout-student.safetensors (~4.4 MB, with
# its sha256 in the report), best.safetensors (resumable), train.log, speed.md.
set -u
budget=${1:-540}
began=$(date +%s)
OUT=${OUT:-/tmp/cutout-device-out}
pack=${STUDENT_PACK:-.carry/student-pack.npz}
dest=$OUT/student
mkdir -p "$dest"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
[[ -f $pack ]] || { echo "no carried pack at $pack" | tee "$dest/train.log"; exit 1; }

# Leave ~110 s for loading, evaluation, export and the speed table.
minutes=$(python3 -c "print(max(1.0, ($budget - 110) / 60))")
workers=$(($(nproc) > 4 ? $(nproc) - 2 : 2))
python3 -m training.distill --pack "$pack" --out "$dest" --model cutout-student \
  --steps 100000 --minutes "$minutes" --batch-size 64 --lr 4e-3 --eval-every 500 \
  --workers "$workers" --device cuda --no-progress >"$dest/train.log" 2>&1
echo "distill exit $? after $(($(date +%s) - began)) s" | tee -a "$dest/train.log"

[[ -f $dest/cutout-student.safetensors ]] || exit 1
left=$((budget - ($(date +%s) - began) - 5))
((left > 20)) || left=20
CUTOUT_DEVICE=cuda timeout "$left" python3 -m bench.student \
  --checkpoint "$dest/cutout-student.safetensors" --batches 1,32 --engines eager,half \
  --models cutout-student,cutout-student-256 \
  >"$dest/speed.md" 2>>"$dest/train.log"
echo "speed exit $? after $(($(date +%s) - began)) s" | tee -a "$dest/train.log"
