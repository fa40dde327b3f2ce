#!/usr/bin/env bash
# One prepared check on a GPU machine, under 8 minutes on one H100, printing one table:
#   1. the device tests (tests/test_devices.py: losses, gradients, bf16 autocast, scores, head
#      expansion, a training step of every strategy, predict; CUDA against the CPU),
#   2. the quick default experiment on the GPU (both scenarios, old models trained here), wall time,
#   3. the paper-scale training-step benchmark: DeepLabV3-ResNet101, 512x512, batch 24, fp32 (TF32)
#      and bf16-mixed, candidate sets (Lightning) against plain cross-entropy fine-tuning.
#
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]   (default $OUT, else outputs/gpu-check in the
# repository; a relative OUT_DIR or $OUT is taken from the current folder)
# Where the GPU image lacks packages, fetch their wheels first (../shared/tools/device_wheels.sh
# writes .whl/); this script installs .whl/*.whl into /tmp/site when the folder is there.
set -uo pipefail
here=$PWD
cd "$(dirname "$0")/.." || exit 1
if [ -n "${1:-${OUT:-}}" ]; then out=$(cd "$here" && realpath -m "${1:-$OUT}"); else out=outputs/gpu-check; fi
mkdir -p "$out"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} WANDB_MODE=disabled PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print('device:', torch.cuda.get_device_name(), '| torch', torch.__version__)" | tee "$out/device.txt" \
  || exit 1
date -u +"date: %Y-%m-%d %H:%M UTC" | tee -a "$out/device.txt"

seconds() { local start=$1; echo $(( $(date +%s) - start )); }

# 1. Device tests.
start=$(date +%s)
python3 -m pytest -q -p no:cacheprovider tests/test_devices.py 2>&1 | tee "$out/device_tests.log" | tail -3
tests_status=${PIPESTATUS[0]}
tests_s=$(seconds "$start")

# 2. The quick default experiment on the GPU (accelerator: auto), a fresh cache.
start=$(date +%s)
timeout 330 python3 -m experiments.run --output "$out/quick" --overwrite --wandb disabled \
  --set cache_dir="$out/cache" --set train.progress_bar=false --set train_old.progress_bar=false \
  > "$out/quick.log" 2>&1
quick_status=$?
quick_s=$(seconds "$start")
tail -16 "$out/quick.log"

# 3. Paper-scale step speed and memory, fp32 (TF32) and bf16-mixed.
bench() {
  timeout 120 python3 -m benchmarks.train_speed --device cuda --model deeplabv3-resnet101 \
    --size 512 --batch-size 24 --strategy candidate-sets --steps 5 --warmup 3 --rounds 1 \
    --matmul-precision high --precision "$1" > "$out/speed-$1.log" 2>&1
  local status=$?
  grep -A2 "vs plain fine-tuning" "$out/speed-$1.log" | tail -1 || true
  return $status
}
start=$(date +%s)
fp32_row=$(bench 32-true); fp32_status=$?
bf16_row=$(bench bf16-mixed); bf16_status=$?
speed_s=$(seconds "$start")

{
  echo
  echo "| check | result | seconds |"
  echo "|---|---|---|"
  echo "| device tests | exit $tests_status: $(tail -1 "$out/device_tests.log") | $tests_s |"
  echo "| quick default experiment on the GPU | exit $quick_status | $quick_s |"
  echo "| step, fp32 (TF32): ours ms, fine-tune ms, ratio, ours MiB, fine-tune MiB, ratio | exit $fp32_status: ${fp32_row:-n/a} | |"
  echo "| step, bf16-mixed: same columns | exit $bf16_status: ${bf16_row:-n/a} | $speed_s |"
  cat "$out/device.txt"
} | tee "$out/summary.md"
[ "$tests_status" -eq 0 ] && [ "$quick_status" -eq 0 ] && [ "$fp32_status" -eq 0 ] \
  && [ "$bf16_status" -eq 0 ]
