#!/usr/bin/env bash
# J-LRD variants side by side on the default model at cache ratios 50%, 25% and 12.5%
# (docs/results.md), plus error-vs-cache-ratio sweeps and their plot.
#   scripts/compare-jlrd.sh [OUT]   (OUT defaults to out/; needs calib.h5 and rope-elite-l1.h5)
# How r and d_kv are chosen: the elite dims take a quarter of the cached elements, so
# 2rG = F·2Gd_h/4, i.e. r = F·d_h/4 (r = 8, 4, 2 for F = 1/2, 1/4, 1/8 with d_h = 64), and the
# latent gets the rest: d_kv = F·2Gd_h − 2rG (144, 72, 36 for SmolLM2's G = 3, d_h = 64).
# Errors are means over the 30 layers on the first 2 stored calibration sequences.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="${1:-$ROOT/out}"
BIN="${EKV_BUILD_DIR:-$ROOT/build}/apps"
MODEL=$("$ROOT/scripts/fetch-model.sh")
ROPE="$OUT/rope-elite-l1.h5"
for f in "$OUT/calib.h5" "$ROPE"; do
  [ -f "$f" ] || { echo "$f is missing: run make (or scripts/run-pipeline.sh) first" >&2; exit 1; }
done
WORK="$OUT/jlrd-compare"
mkdir -p "$WORK"
jlrd() {  # jlrd NAME ARGS...: one ekv-jlrd run into $WORK/NAME.h5; prints its final: line
  echo "+ ekv-jlrd $*" >&2
  "$BIN/ekv-jlrd" --model "$MODEL" --rope "$ROPE" --calib "$OUT/calib.h5" -o "$WORK/$1.h5" "${@:2}" | grep '^final:'
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }

VARIANTS=(
  "S-LRD, weight SVD|--mode separate --svd weight"
  "S-LRD, whitened SVD|--mode separate --svd whitened"
  "J-LRD, weight SVD (the paper)|--mode joint --svd weight"
  "J-LRD, weight SVD, balanced K/V|--mode joint --svd weight --balance-kv"
  "J-LRD, whitened SVD|--mode joint --svd whitened"
  "J-LRD, whitened SVD, balanced K/V|--mode joint --svd whitened --balance-kv"
)
RATIOS=(0.5 0.25 0.125)
{
  echo "| variant | allocation | data err 50% | output err 50% | data err 25% | output err 25% | data err 12.5% | output err 12.5% |"
  echo "|---|---|---|---|---|---|---|---|"
  for allocation in uniform budget; do
    for variant in "${VARIANTS[@]}"; do
      label=${variant%%|*}; args=${variant#*|}
      [[ $allocation == budget && $args == *separate* ]] && continue  # budget ranks are prefixes of one SVD
      row="| $label | $allocation |"
      for f in "${RATIOS[@]}"; do
        r=$(awk "BEGIN{print int($f * 16 + 0.5)}")
        if [[ $allocation == uniform ]]; then how=(--cache-ratio "$f"); else how=(--budget "$f"); fi
        # shellcheck disable=SC2086
        slug=$(tr -s ' -' '-' <<<"$args" | sed 's/^-//')  # e.g. mode-joint-svd-weight-balance-kv
        line=$(jlrd "cmp-$allocation-$slug-$f" --r "$r" $args "${how[@]}")
        row+=" $(field mean_data_error <<<"$line") | $(field mean_output_error <<<"$line") |"
      done
      echo "$row"
    done
  done
  row="| RoPElite alone (full rank) | - |"
  for f in "${RATIOS[@]}"; do
    r=$(awk "BEGIN{print int($f * 16 + 0.5)}")
    line=$(jlrd "cmp-full-$f" --r "$r" --mode joint --svd weight --rank 100000)
    row+=" $(field mean_data_error <<<"$line") | $(field mean_output_error <<<"$line") |"
  done
  echo "$row"
  echo
  echo "(r = 8, 4, 2 at 50%, 25%, 12.5%; d_kv = 144, 72, 36 uniform, or the same total chosen per layer by"
  echo "--budget; errors: ‖(W_J − BA)X‖/‖W_J X‖ and attention-output ‖o' − o‖/‖o‖, means over 30 layers)"
} | tee "$OUT/jlrd-comparison.md"

# Error vs cache ratio at r = 4, four methods, for the plot.
SWEEP=0.1,0.15,0.2,0.25,0.3,0.4,0.5,0.6,0.75,0.9
for mode in joint separate; do
  for svd in weight whitened; do
    jlrd "sweep-$mode-$svd" --r 4 --mode "$mode" --svd "$svd" --cache-ratio "$SWEEP" >/dev/null
  done
done
"$ROOT/.venv/bin/python" "$ROOT/scripts/plot-jlrd.py" -o "$OUT/jlrd-error-vs-cache.png" \
  "S-LRD weight=$WORK/sweep-separate-weight.csv" "S-LRD whitened=$WORK/sweep-separate-whitened.csv" \
  "J-LRD weight=$WORK/sweep-joint-weight.csv" "J-LRD whitened=$WORK/sweep-joint-whitened.csv"
