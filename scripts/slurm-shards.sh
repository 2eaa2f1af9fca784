#!/usr/bin/env bash
# The pipeline's sharded steps as Slurm array jobs (the cluster runner; `make -j SHARDS=N
# ROPE_SHARDS=M` is the one-machine runner of the same shards):
#   1. an array of N jobs, job I calibrating slice I of the one sample (ekv-calibrate --shard I/N)
#   2. one job merging the slices into OUT/calib.h5 (equal to the unsharded file)
#   3. an array of M jobs, each running the RoPE search on one layer range (--layers a:b)
#   4. one job merging the ranges into OUT/rope-elite-l1.h5
# Each step waits for the one before (afterok; a failed shard cancels what depends on it), and
# the script returns when the last job ends, with its exit status. OUT, the tools, the model and
# the corpora must be on storage the compute nodes share. ekv-jlrd and the later steps then run
# with `make` (its --budget allocation is over all layers at once).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/out"
PRESET="$ROOT/configs/smollm2-135m-25.toml"
SHARDS=4
ROPE_SHARDS=2
SBATCH_OPTIONS=()
usage() {
  cat <<EOF
usage: scripts/slurm-shards.sh [--out DIR] [--preset FILE] [--shards N] [--rope-shards M] [-- SBATCH-OPTION...]
  Submits the sharded calibration (N slices, default $SHARDS) and RoPE search (M layer ranges,
  default $ROPE_SHARDS) as Slurm array jobs with their merges, and waits for them.
  Options after -- go to every sbatch (e.g. --partition=cpu --time=2:00:00 --cpus-per-task=8).
  Logs: DIR/logs/slurm-*.log. Example:
    scripts/slurm-shards.sh --out /shared/ekv/out --shards 8 --rope-shards 4 -- --partition=cpu
    make OUT=/shared/ekv/out     # the remaining steps (J-LRD, export, checks) on one machine
EOF
}
while (($#)); do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --preset) PRESET=$2; shift 2 ;;
    --shards) SHARDS=$2; shift 2 ;;
    --rope-shards) ROPE_SHARDS=$2; shift 2 ;;
    --) shift; SBATCH_OPTIONS=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
command -v sbatch >/dev/null || { echo "slurm-shards: sbatch not found: run on a Slurm submit host" >&2; exit 1; }
[[ $SHARDS =~ ^[1-9][0-9]*$ ]] || { echo "slurm-shards: --shards $SHARDS: expected a positive count" >&2; exit 2; }
[ -f "$PRESET" ] || { echo "slurm-shards: --preset $PRESET: no such file" >&2; exit 2; }
BIN="${EKV_BUILD_DIR:-$ROOT/build}/apps"
MODEL=$("$ROOT/scripts/fetch-model.sh")
CORPORA=$("$ROOT/scripts/make-corpora.sh")
RANGES=$("$ROOT/scripts/layer-ranges.sh" "$MODEL" "$ROPE_SHARDS" "$BIN")
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
mkdir -p "$OUT/shards" "$OUT/logs"
q() { local w out=(); for w; do out+=("$(printf '%q' "$w")"); done; echo "${out[*]}"; }  # words, quoted for a job script
job() {  # job NAME LINE...: writes OUT/shards/NAME.sbatch, a bash job script of those lines
  local file="$OUT/shards/$1.sbatch"
  shift
  printf '#!/bin/bash\nset -euo pipefail\n' >"$file"
  printf '%s\n' "$@" >>"$file"
  echo "$file"
}
submit() {  # submit SBATCH-OPTION... JOB-SCRIPT: prints the job id
  sbatch --parsable --kill-on-invalid-dep=yes "${SBATCH_OPTIONS[@]}" "$@" | cut -d';' -f1
}

slices=()
for ((i = 0; i < SHARDS; i++)); do slices+=("$OUT/shards/calib-$i-of-$SHARDS.h5"); done
calibrate=$(submit --job-name=ekv-calibrate --array=0-$((SHARDS - 1)) -o "$OUT/logs/slurm-calibrate-%a.log" \
  "$(job calibrate "i=\$SLURM_ARRAY_TASK_ID" \
    "$(q "$BIN/ekv-calibrate" --model "$MODEL" --text "$CORPORA/calib.txt" --config "$PRESET") --shard \$i/$SHARDS \\" \
    "  -o $(q "$OUT/shards")/calib-\$i-of-$SHARDS.h5")")
merge=$(submit --job-name=ekv-calibrate-merge --dependency=afterok:"$calibrate" -o "$OUT/logs/slurm-calibrate-merge.log" \
  "$(job calibrate-merge "$(q "$BIN/ekv-calibrate" merge "${slices[@]}" -o "$OUT/calib.h5")")")
parts=()
for range in $RANGES; do parts+=("$OUT/shards/rope-${range/:/-}.h5"); done
rope=$(submit --job-name=ekv-select-rope --array=0-$((ROPE_SHARDS - 1)) --dependency=afterok:"$merge" \
  -o "$OUT/logs/slurm-select-rope-%a.log" \
  "$(job select-rope "ranges=($RANGES)" "range=\${ranges[\$SLURM_ARRAY_TASK_ID]}" \
    "$(q "$BIN/ekv-select-rope" --model "$MODEL" --calib "$OUT/calib.h5" --config "$PRESET") --layers \$range \\" \
    "  -o $(q "$OUT/shards")/rope-\${range/:/-}.h5")")
echo "[slurm-shards] submitted: calibrate $calibrate (array of $SHARDS), merge $merge, select-rope $rope" \
     "(array of $ROPE_SHARDS: $RANGES); waiting for the rope merge" >&2
submit --job-name=ekv-select-rope-merge --dependency=afterok:"$rope" -o "$OUT/logs/slurm-select-rope-merge.log" --wait \
  "$(job select-rope-merge "$(q "$BIN/ekv-select-rope" merge "${parts[@]}" -o "$OUT/rope-elite-l1.h5")")" >"$OUT/shards/last-job"
# sbatch --wait returns 0 for a job cancelled by a failed dependency: every job must have completed.
failed=0
for id in "$calibrate" "$merge" "$rope" "$(cat "$OUT/shards/last-job")"; do
  while read -r name state; do
    [ "$state" = COMPLETED ] || { echo "[slurm-shards] job $id ($name): $state" >&2; failed=1; }
  done < <(scontrol show job "$id" -o | sed -n 's/.*JobName=\([^ ]*\).* JobState=\([A-Z_]*\).*/\1 \2/p')
done
((failed == 0)) || { echo "[slurm-shards] failed: see $OUT/logs/slurm-*.log" >&2; exit 1; }
echo "[slurm-shards] done: $OUT/calib.h5, $OUT/rope-elite-l1.h5" >&2
