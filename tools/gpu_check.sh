#!/usr/bin/env bash
# End-to-end check of training and inference on a GPU machine, on generated data (mtl-ehrnet synth):
# train-teacher (pose and seg) with fp16 AMP, distill with online teachers (fp16) and from a teacher cache
# (bf16, NCHW), evaluate, predict and benchmark on CUDA, the per-step sync budget of a training step
# (tests/distill/test_step_syncs.py), and a two-process torchrun where two GPUs exist. Each training run takes
# 30 optimizer steps over 3 epochs. Prints one line per check: name, OK / FAILED / SKIPPED, seconds.
# Sized to stay under 8 minutes on one GPU (cuDNN's kernel search makes each run's first step the longest).
#
# Without a CUDA device it says so and exits 0 having run nothing; --cpu runs the same commands on the CPU at
# toy sizes (a smoke test of the commands and of this script).
#
# Usage: tools/gpu_check.sh [--cpu] [--work DIR] [--steps N] [--keep]
#   --work DIR  where the data, runs and logs go (default: a new temporary folder, removed at the end
#               unless a check failed or --keep is given)
#   --steps N   optimizer steps of each training run (default 30; --cpu: 2)
# Exit status: 0 when every check that ran passed, 1 otherwise (2: bad arguments).
set -u -o pipefail

cpu=0 keep=0 work="" steps=""
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) cpu=1 ;;
        --keep) keep=1 ;;
        --work) work="$2"; shift ;;
        --steps) steps="$2"; shift ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

python=${PYTHON:-python3}
gpus=$("$python" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)") || {
    echo "gpu_check: cannot import torch with $python" >&2; exit 1; }
if [ "$cpu" = 0 ] && [ "$gpus" = 0 ]; then
    echo "gpu_check: no CUDA device is visible: nothing was run (--cpu runs the CPU smoke subset)"
    exit 0
fi
command -v mtl-ehrnet >/dev/null || { echo "gpu_check: mtl-ehrnet is not installed (pip install -e .)" >&2; exit 1; }

if [ "$cpu" = 1 ]; then
    device=cpu images=8 size=96x72 input=64 batch=2 steps=${steps:-2} limit=3 timed=2 workers=0
else
    device=cuda images=160 size=320x240 input=256 batch=8 steps=${steps:-30} limit=16 timed=20 workers=8
fi
# At most 10 steps an epoch (the smaller set holds 14 batches), so that runs also cross epoch boundaries.
per_epoch=$((steps < 10 ? steps : 10))
epochs=$(((steps + per_epoch - 1) / per_epoch))
made_work=0
if [ -z "$work" ]; then work=$(mktemp -d -t gpu_check.XXXXXX); made_work=1; fi
mkdir -p "$work/logs"
repo=$(cd "$(dirname "$0")/.." && pwd)
failed=0

# check NAME COMMAND...: runs COMMAND (output to logs/NAME.log, at most 10 minutes) and prints its line.
check() {
    local name=$1 started status
    shift
    started=$(date +%s%N)
    if timeout 600 "$@" >"$work/logs/$name.log" 2>&1; then status=OK; else status=FAILED; failed=$((failed + 1)); fi
    printf '%-24s %-7s %7s s\n' "$name" "$status" "$(awk "BEGIN { printf \"%.1f\", ($(date +%s%N) - $started) / 1e9 }")"
}

skip() {
    printf '%-24s %-7s %7s   (%s)\n' "$1" SKIPPED - "$2"
}

data="$work/data" runs="$work/runs"
coco=("$data/coco/annotations/person_keypoints_train.json" "$data/coco/images/train")
coco_val=("$data/coco/annotations/person_keypoints_val.json" "$data/coco/images/val")
common=(--set "data.input_size=$input" --epochs "$epochs" --set "run.steps_per_epoch=$per_epoch" --batch-size "$batch"
        --set "run.workers=$workers" --set run.val_every=0 --device "$device")
where=$([ "$cpu" = 1 ] && echo "CPU smoke run" || echo "$gpus CUDA device(s)")
echo "gpu_check: $where, $steps steps per run ($epochs epochs of $per_epoch), work folder $work"

check synth mtl-ehrnet synth "$data" --images "$images" --size "$size" --seed 0
check train-teacher-pose-fp16 mtl-ehrnet train-teacher pose --model pose_h-4 --coco "${coco[@]}" "${common[@]}" \
    --set run.amp=fp16 --out "$runs/pose"
check train-teacher-seg-fp16 mtl-ehrnet train-teacher seg --model seg_h-4 --cityscapes "$data/cityscapes" \
    "${common[@]}" --set run.amp=fp16 --out "$runs/seg"
teachers=(--pose-teacher "$runs/pose/last.pt" --seg-teacher "$runs/seg/last.pt")
distill=(mtl-ehrnet distill --student mtl_h-4 --coco "${coco[@]}" --cityscapes "$data/cityscapes" --set "run.task_ratios=[1, 1]"
         "${teachers[@]}" "${common[@]}")
check distill-online-fp16 "${distill[@]}" --set run.amp=fp16 --out "$runs/distill"
check distill-cache-bf16 "${distill[@]}" --set run.amp=bf16 --set run.channels_last=false --cache "$work/cache" \
    --out "$runs/distill_cache"
check evaluate mtl-ehrnet evaluate "$runs/distill_cache/student.pt" --coco "${coco_val[@]}" \
    --cityscapes "$data/cityscapes" --limit "$limit" --device "$device" --json "$runs/eval.json"
check predict mtl-ehrnet predict "$runs/distill/student.pt" "$data/coco/images/val" --out "$runs/predict" \
    --device "$device"
check benchmark mtl-ehrnet benchmark --models mtl_h-4 --input-size "$input" --runs "$timed" --warmup 2 \
    --device "$device"
if [ "$cpu" = 1 ]; then
    skip step-syncs "CUDA only"
elif [ -f "$repo/tests/distill/test_step_syncs.py" ]; then
    check step-syncs "$python" -m pytest -q -p no:cacheprovider "$repo/tests/distill/test_step_syncs.py" -k cuda
else
    skip step-syncs "no tests/ beside tools/"
fi
if [ "$cpu" = 0 ] && [ "$gpus" -ge 2 ]; then
    check torchrun-2-gpus torchrun --standalone --nproc_per_node=2 --no-python mtl-ehrnet train-teacher pose \
        --model pose_h-4 --coco "${coco[@]}" "${common[@]}" --set run.amp=bf16 --set run.sync_bn=true --out "$runs/ddp"
else
    skip torchrun-2-gpus "needs two CUDA devices"
fi

if [ "$failed" -gt 0 ]; then
    echo "gpu_check: $failed check(s) FAILED; their logs are in $work/logs"
    exit 1
fi
echo "gpu_check: every check passed"
if [ "$made_work" = 1 ] && [ "$keep" = 0 ]; then rm -rf "$work"; fi
exit 0
