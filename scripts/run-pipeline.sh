#!/usr/bin/env bash
# The main job: the whole pipeline on the default model. Each stage is one step; --stage N
# resumes from stage N. Today's stages: set-up, build, model fetch and corpora, model
# description, perplexity of the original model on the evaluation corpus, calibration
# (calib.h5: 64 x 512 tokens of the calibration corpus), RoPE selection by every method with
# the held-out comparison table and plot (scripts/compare-rope.sh), J-LRD at 25% cache
# (jlrd.h5) and the J-LRD comparison table and plot (scripts/compare-jlrd.sh), the export of
# the compressed model (out/model-elitekv), its decoding check and fidelity report (the end of
# the main job), and with --ablation the fidelity ablation at 50/25/12.5% (scripts/compare-export.sh).
# EKV_PPL_WINDOWS (default 32; 0 = the whole corpus) bounds the perplexity stage.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STAGE=0
ABLATION=0
OUT="${EKV_OUT:-$ROOT/out}"
while (($#)); do
  case "$1" in
    --stage) STAGE="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --ablation) ABLATION=1; shift ;;
    -h|--help)
      echo "usage: scripts/run-pipeline.sh [--stage N] [--out DIR] [--ablation]"
      echo "  stages: 0 setup, 1 build, 2 fetch model + corpora, 3 describe model (ekv-info),"
      echo "          4 perplexity of the original model (ekv-check ppl), 5 calibrate (ekv-calibrate),"
      echo "          6 RoPE selection, every method, held-out comparison (ekv-select-rope),"
      echo "          7 J-LRD at 25% cache, and the comparison at 50/25/12.5% (ekv-jlrd)"
      echo "          8 export at 25% (ekv-export), decoding check and fidelity report (ekv-check)"
      echo "          9 (only with --ablation) fidelity ablation at 50/25/12.5%: the paper's configuration,"
      echo "            the previous best, then each output-aware option of ekv-jlrd in turn (about 45 minutes)"
      exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT/logs"
BIN="${EKV_BUILD_DIR:-$ROOT/build}/apps"

step() {  # step N NAME COMMAND...: runs COMMAND when N >= STAGE, logging to out/logs/NAME.log
  local n=$1 name=$2; shift 2
  ((n >= STAGE)) || return 0
  echo "== stage $n: $name: $*" >&2
  local t0=$(date +%s)
  "$@" 2> >(tee "$OUT/logs/$name.log" >&2)
  echo "== stage $n: $name done in $(($(date +%s) - t0)) s" >&2
}

step 0 setup "$ROOT/scripts/setup.sh"
step 1 build "$ROOT/scripts/build.sh"
MODEL=$("$ROOT/scripts/fetch-model.sh")
CORPORA=$("$ROOT/scripts/make-corpora.sh")
step 3 info "$BIN/ekv-info" "$MODEL"
step 4 ppl "$BIN/ekv-check" ppl --model "$MODEL" --text "$CORPORA/eval.txt" --window 512 \
  --max-windows "${EKV_PPL_WINDOWS:-32}"
# 32 stored sequences: the W_o refit of stage 7 fits on them (8 over-fit: docs/results.md).
step 5 calibrate "$BIN/ekv-calibrate" --model "$MODEL" --text "$CORPORA/calib.txt" --seq-len 512 --num-seqs 64 \
  --seed 0 --keep-seqs 32 -o "$OUT/calib.h5"
step 5 describe-calib "$BIN/ekv-info" "$OUT/calib.h5"
step 6 select-rope "$ROOT/scripts/compare-rope.sh" "$OUT"
# 25% cache: r = 6 elite chunks (36 of the 384 cached elements per token and layer) plus a
# latent of 60 per layer on average, placed by --budget, with the output-aware options that
# measured best on held-out text: chunk maps, attention-aware weights, W_o refit
# (docs/results.md has the ablation).
step 7 jlrd "$BIN/ekv-jlrd" --model "$MODEL" --rope "$OUT/rope-elite-l1.h5" --calib "$OUT/calib.h5" --r 6 \
  --mode joint --svd whitened --budget 0.25 --chunk-map auto --weighting attention --refit-output -o "$OUT/jlrd.h5"
step 7 compare-jlrd "$ROOT/scripts/compare-jlrd.sh" "$OUT"
step 8 export "$BIN/ekv-export" --model "$MODEL" --rope "$OUT/rope-elite-l1.h5" --jlrd "$OUT/jlrd.h5" \
  -o "$OUT/model-elitekv"
step 8 decode "$BIN/ekv-check" decode --compressed "$OUT/model-elitekv" --model "$MODEL" --text "$CORPORA/eval.txt" \
  --prompt 64 --steps 64
step 8 compare "$BIN/ekv-check" compare --model "$MODEL" --compressed "$OUT/model-elitekv" \
  --text "$CORPORA/eval.txt" --max-windows 16 -o "$OUT/fidelity.json"
if ((ABLATION)); then step 9 compare-export "$ROOT/scripts/compare-export.sh" "$OUT"; fi
echo "== fidelity report: $OUT/fidelity.json" >&2
