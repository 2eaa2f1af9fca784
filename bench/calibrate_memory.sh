#!/usr/bin/env bash
# Peak RSS of ekv-calibrate on models with LLaMA-2-7B layer shapes at 4 and at 16 layers
# (random bf16 HF checkpoints, 8 sequences x 512 tokens). The peak must not grow with depth.
# Needs about 7 GB of disk under $WORK (default /tmp/ekv-7b); removes it afterwards.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="${EKV_BUILD_DIR:-$ROOT/build}"
WORK="${WORK:-/tmp/ekv-7b}"
trap 'rm -rf "$WORK"' EXIT
for layers in 4 16; do
  dir="$WORK/llama2-7b-shape-$layers"
  "$BIN/bench/bench_calibrate" make-checkpoint "$dir" "$layers" 2>/dev/null
  /usr/bin/time -v "$BIN/apps/ekv-calibrate" --model "$dir" --tokens "$dir/tokens.safetensors" --seq-len 512 \
    --num-seqs 8 --keep-seqs 2 --quiet -o "$WORK/calib-$layers.h5" 2>"$WORK/time-$layers.log"
  rss=$(awk '/Maximum resident set size/ {print $6}' "$WORK/time-$layers.log")
  wall=$(awk '/Elapsed \(wall clock\)/ {print $8}' "$WORK/time-$layers.log")
  echo "layers=$layers peak_rss=$((rss / 1024)) MiB wall=$wall"
  rm -rf "$dir"
done
