#!/usr/bin/env bash
# Fidelity of exported models at cache ratios 50%, 25% and 12.5% (docs/results.md): the best
# configuration (elite-l1 + whitened J-LRD, ranks by --budget) and the paper's plain one
# (elite-l1 + weight J-LRD, uniform rank), each exported and measured by `ekv-check compare`
# on held-out text. No uptraining: these are the compressed models as exported.
#   scripts/compare-export.sh [OUT]   (OUT defaults to out/; needs calib.h5 and rope-elite-l1.h5)
# r = 8, 4, 2 at 50/25/12.5% (the elite dims take a quarter of the cache; scripts/compare-jlrd.sh).
# EKV_COMPARE_WINDOWS (default 16) windows of 512 tokens of the evaluation corpus are scored.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="${1:-$ROOT/out}"
BIN="${EKV_BUILD_DIR:-$ROOT/build}/apps"
MODEL=$("$ROOT/scripts/fetch-model.sh")
CORPORA=$("$ROOT/scripts/make-corpora.sh")
ROPE="$OUT/rope-elite-l1.h5"
WINDOWS="${EKV_COMPARE_WINDOWS:-16}"
for f in "$OUT/calib.h5" "$ROPE"; do
  [ -f "$f" ] || { echo "$f is missing: run scripts/run-pipeline.sh first" >&2; exit 1; }
done
WORK="$OUT/export-compare"
mkdir -p "$WORK"
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }

CONFIGS=(
  "best: elite-l1 + whitened J-LRD, budget|--svd whitened --budget"
  "paper: elite-l1 + weight J-LRD, uniform|--svd weight --cache-ratio"
)
{
  echo "| cache | configuration | r | ppl original | ppl compressed | mean KL (nats) | top-1 agreement | mean layer error |"
  echo "|---|---|---|---|---|---|---|---|"
  for f in 0.5 0.25 0.125; do
    r=$(awk "BEGIN{print int($f * 16 + 0.5)}")
    for config in "${CONFIGS[@]}"; do
      label=${config%%|*}; args=${config#*|}
      name="$(cut -d: -f1 <<<"$label")-$f"
      echo "+ $label at $f" >&2
      # shellcheck disable=SC2086
      "$BIN/ekv-jlrd" --model "$MODEL" --rope "$ROPE" --calib "$OUT/calib.h5" --r "$r" --mode joint $args "$f" \
        -o "$WORK/$name.h5" --quiet >/dev/null
      "$BIN/ekv-export" --model "$MODEL" --rope "$ROPE" --jlrd "$WORK/$name.h5" -o "$WORK/$name" --quiet >/dev/null
      line=$("$BIN/ekv-check" compare --model "$MODEL" --compressed "$WORK/$name" --text "$CORPORA/eval.txt" \
        --max-windows "$WINDOWS" -o "$WORK/$name.json" --quiet | grep '^final:')
      pct=$(awk "BEGIN{print $f * 100}")
      echo "| ${pct}% | $label | $r | $(field ppl_original <<<"$line") | $(field ppl_compressed <<<"$line") |" \
           "$(field kl <<<"$line") | $(field top1 <<<"$line") | $(field mean_layer_error <<<"$line") |"
      rm -rf "${WORK:?}/$name"  # the export itself (~600 MB); the report stays
    done
  done
  echo
  echo "($WINDOWS windows x 512 tokens of the evaluation corpus; KL(p_orig ‖ p_comp) and top-1 over every scored"
  echo "position; layer error: ‖o' − o‖/‖o‖ of the attention block with the original model's inputs; no uptraining)"
} | tee "$OUT/fidelity-comparison.md"
