#!/usr/bin/env bash
# RoPElite vs its baselines on the default model: searches every method on the pipeline's
# calib.h5, calibrates HELD-OUT inputs from the evaluation corpus, and prints the mean
# |Δlogit| table for r = 2, 4, 8, 16 (docs/results.md), plus the elite-chunk plot.
#   scripts/compare-rope.sh [OUT]   (OUT defaults to out/, which must hold calib.h5)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="${1:-$ROOT/out}"
BIN="${EKV_BUILD_DIR:-$ROOT/build}/apps"
MODEL=$("$ROOT/scripts/fetch-model.sh")
CORPORA=$("$ROOT/scripts/make-corpora.sh")
[ -f "$OUT/calib.h5" ] || { echo "$OUT/calib.h5 is missing: run make (or scripts/run-pipeline.sh) first" >&2; exit 1; }
run() { echo "+ $*" >&2; "$@"; }
# The main job (the Makefile) makes rope-elite-l1.h5; made here only when run alone.
[ -f "$OUT/rope-elite-l1.h5" ] || run "$BIN/ekv-select-rope" --model "$MODEL" --calib "$OUT/calib.h5" --method elite --objective l1 \
  -o "$OUT/rope-elite-l1.h5"
run "$BIN/ekv-select-rope" --model "$MODEL" --calib "$OUT/calib.h5" --method elite --objective l2 -o "$OUT/rope-elite-l2.h5"
for method in uniform high low norm; do
  run "$BIN/ekv-select-rope" --model "$MODEL" --calib "$OUT/calib.h5" --method "$method" -o "$OUT/rope-$method.h5"
done
[ -f "$OUT/heldout.h5" ] || run "$BIN/ekv-calibrate" --model "$MODEL" --text "$CORPORA/eval.txt" --seq-len 512 \
  --num-seqs 8 --keep-seqs 8 --seed 1 -o "$OUT/heldout.h5"
run "$BIN/ekv-select-rope" evaluate --model "$MODEL" --calib "$OUT/heldout.h5" --r 2,4,8,16 \
  "$OUT/rope-elite-l1.h5" "$OUT/rope-elite-l2.h5" "$OUT"/rope-{uniform,high,low,norm}.h5 | tee "$OUT/rope-comparison.md"
run "$ROOT/.venv/bin/python" "$ROOT/scripts/plot-rope.py" "$OUT/rope-elite-l1.h5" --r 4 -o "$OUT/rope-elite-l1.png"
