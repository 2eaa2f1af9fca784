#!/usr/bin/env bash
# Memory and time of each pipeline step at LLaMA-2-7B layer shapes, with the scale preset
# configs/llama2-7b-shape-25.toml: a synthetic checkpoint of LAYERS layers (random bf16 weights,
# random token ids; cost only, never quality) through ekv-calibrate, ekv-select-rope, ekv-jlrd and
# ekv-export, each under /usr/bin/time -v. Prints one line per step: peak RSS and wall time.
#   bench/scale-7b.sh [LAYERS]      (default 4; about 1.5 GB of disk a layer under $WORK)
# EKV_JLRD_FLAGS adds ekv-jlrd options (e.g. --low-memory: nothing but the error curves kept
# between its two passes, the setting whose peak must not grow with depth).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="${EKV_BUILD_DIR:-$ROOT/build}"
LAYERS="${1:-4}"
WORK="${WORK:-/tmp/ekv-scale-7b}"
PRESET="$ROOT/configs/llama2-7b-shape-25.toml"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"
model="$WORK/llama2-7b-shape-$LAYERS"
"$BUILD/bench/bench_calibrate" make-checkpoint "$model" "$LAYERS" 2>/dev/null
step() {  # step NAME COMMAND...: runs it under time -v and prints its peak RSS and wall
  local name=$1
  shift
  /usr/bin/time -v "$@" --quiet 2>"$WORK/$name.time" >/dev/null || { cat "$WORK/$name.time" >&2; exit 1; }
  echo "layers=$LAYERS step=$name peak_rss=$(( $(awk '/Maximum resident set size/ {print $6}' "$WORK/$name.time") / 1024 )) MiB" \
       "wall=$(awk '/Elapsed \(wall clock\)/ {print $8}' "$WORK/$name.time")"
}
step calibrate "$BUILD/apps/ekv-calibrate" --model "$model" --tokens "$model/tokens.safetensors" --config "$PRESET" \
  -o "$WORK/calib.h5"
step select-rope "$BUILD/apps/ekv-select-rope" --model "$model" --calib "$WORK/calib.h5" --config "$PRESET" \
  -o "$WORK/rope.h5"
# shellcheck disable=SC2086  # EKV_JLRD_FLAGS is a list of options
step jlrd "$BUILD/apps/ekv-jlrd" --model "$model" --rope "$WORK/rope.h5" --calib "$WORK/calib.h5" --config "$PRESET" \
  ${EKV_JLRD_FLAGS:-} -o "$WORK/jlrd.h5"
step export "$BUILD/apps/ekv-export" --model "$model" --rope "$WORK/rope.h5" --jlrd "$WORK/jlrd.h5" \
  -o "$WORK/model-elitekv"
