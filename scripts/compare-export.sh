#!/usr/bin/env bash
# Fidelity of exported models at cache ratios 50%, 25% and 12.5% (docs/results.md): the paper's
# plain configuration (elite-l1 + weight J-LRD, uniform rank), the previous best (elite-l1 +
# whitened J-LRD, ranks by --budget), then the output-aware options of ekv-jlrd added one at a
# time (chunk maps, attention-aware weights, W_o refit, more elite chunks). Each is exported and
# measured by `ekv-check compare` on held-out text. No uptraining: the models as exported.
#   scripts/compare-export.sh [OUT]   (OUT defaults to out/; needs calib.h5 and rope-elite-l1.h5)
# EKV_COMPARE_WINDOWS (default 16) windows of 512 tokens of the evaluation corpus are scored.
# EKV_COMPARE_RATIOS (default "0.5 0.25 0.125") picks the cache ratios, EKV_COMPARE_CONFIGS (default:
# all) the configurations by name (paper best maps weights refit default), EKV_MODEL_NAME the model
# (scripts/fetch-model.sh --list; OUT must have been made from it).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="${1:-$ROOT/out}"
BIN="${EKV_BUILD_DIR:-$ROOT/build}/apps"
MODEL=$("$ROOT/scripts/fetch-model.sh" ${EKV_MODEL_NAME:+"$EKV_MODEL_NAME"})
CORPORA=$("$ROOT/scripts/make-corpora.sh")
ROPE="$OUT/rope-elite-l1.h5"
WINDOWS="${EKV_COMPARE_WINDOWS:-16}"
for f in "$OUT/calib.h5" "$ROPE"; do
  [ -f "$f" ] || { echo "$f is missing: run make (or scripts/run-pipeline.sh) first" >&2; exit 1; }
done
WORK="$OUT/export-compare"
mkdir -p "$WORK"
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }

# label|name|r rule|ekv-jlrd options (the cache ratio follows the last one). r rules: "quarter"
# gives the elite dims a quarter of the cache (r = F·d_h/4: 8, 4, 2), "measured" the 3/8 that
# measured best at 25% (r = 3F·d_h/8: 12, 6, 3).
WHITENED="--svd whitened"
REFINED="$WHITENED --chunk-map auto --weighting attention --refit-output"
CONFIGS=(
  "paper: weight J-LRD, uniform|paper|quarter|--svd weight --cache-ratio"
  "previous best: whitened J-LRD, budget|best|quarter|$WHITENED --budget"
  "+ chunk maps (auto)|maps|quarter|$WHITENED --chunk-map auto --budget"
  "+ attention-aware weights|weights|quarter|$WHITENED --chunk-map auto --weighting attention --budget"
  "+ W_o refit|refit|quarter|$REFINED --budget"
  "+ r = 3/8 of the cache (the default)|default|measured|$REFINED --budget"
)
{
  echo "| cache | configuration | r | ppl original | ppl compressed | mean KL (nats) | top-1 agreement | mean layer error | ekv-jlrd time |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for f in ${EKV_COMPARE_RATIOS:-0.5 0.25 0.125}; do
    for config in "${CONFIGS[@]}"; do
      IFS='|' read -r label key rule args <<<"$config"
      if [ -n "${EKV_COMPARE_CONFIGS:-}" ] && [[ " $EKV_COMPARE_CONFIGS " != *" $key "* ]]; then continue; fi
      if [ "$rule" = quarter ]; then r=$(awk "BEGIN{print int($f * 16 + 0.5)}"); else r=$(awk "BEGIN{print int($f * 24 + 0.5)}"); fi
      name="$key-$f"
      echo "+ $label at $f" >&2
      t0=$(date +%s.%N)
      # shellcheck disable=SC2086
      "$BIN/ekv-jlrd" --model "$MODEL" --rope "$ROPE" --calib "$OUT/calib.h5" --r "$r" --mode joint $args "$f" \
        -o "$WORK/$name.h5" --quiet >/dev/null
      seconds=$(awk "BEGIN{printf \"%.0f s\", $(date +%s.%N) - $t0}")
      "$BIN/ekv-export" --model "$MODEL" --rope "$ROPE" --jlrd "$WORK/$name.h5" -o "$WORK/$name" --quiet >/dev/null
      line=$("$BIN/ekv-check" compare --model "$MODEL" --compressed "$WORK/$name" --text "$CORPORA/eval.txt" \
        --max-windows "$WINDOWS" -o "$WORK/$name.json" --quiet | grep '^final:')
      pct=$(awk "BEGIN{print $f * 100}")
      echo "| ${pct}% | $label | $r | $(field ppl_original <<<"$line") | $(field ppl_compressed <<<"$line") |" \
           "$(field kl <<<"$line") | $(field top1 <<<"$line") | $(field mean_layer_error <<<"$line") | $seconds |"
      rm -rf "${WORK:?}/$name"  # the export itself (~600 MB); the report stays
    done
  done
  echo
  echo "($WINDOWS windows x 512 tokens of the evaluation corpus; KL(p_orig ‖ p_comp) and top-1 over every scored"
  echo "position; layer error: ‖o' − o‖/‖o‖ of the attention block with the original model's inputs; no uptraining."
  echo "Calibration: $OUT/calib.h5 on the calibration corpus; time: ekv-jlrd wall clock on this machine)"
} | tee "$OUT/fidelity-comparison.md"
