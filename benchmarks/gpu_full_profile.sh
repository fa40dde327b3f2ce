#!/usr/bin/env bash
# The full profile (README's results) on one GPU machine inside a fixed time budget, with the
# device tests beside it. Meant for a lent H100/H200 with 16 CPU cores: the runs are small
# (small-unet, 64x64 scenes), so one process per run keeps one core busy launching kernels
# and the GPU serves them all (`--jobs`, default 15, explicit because `jobs: auto` is 1 on a GPU).
#
#   1. tests/test_devices.py (CUDA against the CPU), in the background, logged;
#   2. the full profile's base scenarios (experiments/configs/profile/full.yaml's scenarios whose
#      name has no "-siblings"): old models per seed, then every strategy x seed;
#   3. its sibling-rate variants (they reuse their base's old models from the shared cache) with
#      the time left;
#   4. results.csv, summary.md, config.yaml and each run's metrics.csv packed into
#      OUT/full-profile.tgz (no checkpoints), even when a phase ran out of time: the runner writes
#      results.csv after every finished run. A second call with the same WORK folder on the same
#      machine resumes both phases (the old models and checkpoints stay in WORK, not in the pack).
#
# Usage: bash benchmarks/gpu_full_profile.sh [OUT_DIR]   (default $OUT, else outputs/gpu-full-profile;
# a relative OUT_DIR is taken from the current folder); `--scenarios` prints the two lists. Exit status: 0 when both phases finished,
# 2 when the budget cut a phase short or left it unstarted (the pack holds what finished), 1 when
# a phase failed otherwise or the pack could not be written.
# Settings (environment): BUDGET seconds for phases 2-3 (default 500), JOBS (default 15),
# EXTRA (more arguments for both experiment runs, e.g. a smaller grid for a dry run on a CPU),
# DEVICE_TESTS=0 (leave out phase 1), WORK (the runs and the shared cache; /tmp/full-profile).
# Where the GPU image lacks packages, fetch their wheels first (../shared/tools/device_wheels.sh
# writes .whl/); this script installs .whl/*.whl into /tmp/site when the folder is there.
set -uo pipefail
here=$PWD
cd "$(dirname "$0")/.." || exit 1
root=$PWD
# The profile's two scenario lists, read from the profile itself.
scenarios() {  # 0: the base scenarios, 1: the sibling-rate variants
  python3 -c "import sys, yaml; names = yaml.safe_load(open(sys.argv[1]))['scenarios']; \
print(','.join(n for n in names if ('-siblings' in n) == bool(int(sys.argv[2]))))" \
    experiments/configs/profile/full.yaml "$1"
}
base=$(scenarios 0) && siblings=$(scenarios 1) || exit 1
if [ "${1:-}" = --scenarios ]; then printf 'base: %s\nsiblings: %s\n' "$base" "$siblings"; exit 0; fi
cd "$here" || exit 1
out=${1:-${OUT:-outputs/gpu-full-profile}}
work=${WORK:-/tmp/full-profile}
mkdir -p "$out" "$work" || exit 1
out=$(cd "$out" && pwd) work=$(cd "$work" && pwd)  # absolute: the script moves to the repo root
cd "$root" || exit 1
budget=${BUDGET:-500}
jobs=${JOBS:-15}
extra=${EXTRA:-}
start=$(date +%s)
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} WANDB_MODE=disabled PYTHONUNBUFFERED=1
# cuBLAS's deterministic mode (train.deterministic "warn" otherwise warns on every such product).
export CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}
{
  python3 -c "import torch; print('device:', torch.cuda.get_device_name() if torch.cuda.is_available() \
else 'no CUDA device (CPU)', '| torch', torch.__version__)"
  date -u +"date: %Y-%m-%d %H:%M UTC"
  echo "cpu cores: $(nproc), jobs: $jobs, budget: $budget s"
} | tee "$out/device.txt"


# 1. Device tests, beside the runs (they take a core and a little of the GPU).
device_tests() {
  if [ "${DEVICE_TESTS:-1}" = 0 ]; then echo "skipped (DEVICE_TESTS=0)"; return 0; fi
  timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_devices.py 2>&1
  echo "exit $?"
}
device_tests >"$out/device_tests.log" &
tests_pid=$!

left() { echo $(( budget - ($(date +%s) - start) )); }
result=0
run_profile() {  # name, scenarios: the runner's output goes to $work/name, its log to OUT/name.log
  local name=$1 scenarios=$2 seconds phase_start status
  local -a more resume=()
  seconds=$(left)
  if [ "$seconds" -lt 30 ]; then
    echo "$name: not started (under 30 s of the budget left)" | tee -a "$out/phases.txt"
    [ "$result" = 1 ] || result=2
    return
  fi
  phase_start=$(date +%s)
  [ -f "$work/$name/config.yaml" ] && resume=(--resume)  # a second call finishes the grid
  set -f; read -r -a more <<<"$extra"; set +f  # EXTRA split on spaces, never globbed
  timeout --signal=INT --kill-after=20 "$seconds" python3 -m experiments.run --profile full \
    --scenarios "$scenarios" --jobs "$jobs" --output "$work/$name" "${resume[@]}" \
    --wandb disabled --set cache_dir="$work/cache" --set train.progress_bar=false \
    --set train_old.progress_bar=false "${more[@]}" >"$out/$name.log" 2>&1
  status=$?
  echo "$name: exit $status after $(( $(date +%s) - phase_start )) s (limit $seconds s)" \
    | tee -a "$out/phases.txt"
  if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    [ "$result" = 1 ] || result=2
  elif [ "$status" != 0 ]; then
    result=1
  fi
}

# 2-3. The base scenarios first (their old models), then the sibling-rate variants.
run_profile base "$base"
run_profile siblings "$siblings"

wait "$tests_pid"
tail -3 "$out/device_tests.log"
# 4. Everything but checkpoints and old models, in one file.
(cd "$work" && find . -path ./cache -prune -o \( -name results.csv -o -name summary.md \
  -o -name config.yaml -o -name metrics.csv \) -print | tar czf "$out/full-profile.tgz" -T -) \
  || result=1
ls -la "$out"
echo "total: $(( $(date +%s) - start )) s, exit $result"
exit "$result"
