#!/usr/bin/env bash
# Training-free fidelity of the layouts an engine can serve against the free one (docs/results.md,
# "Engine layouts"), at cache ratios 50 %, 25 % and 12.5 %, with the preset's J-LRD options
# (whitened, chunk maps, attention-aware weights, W_o refit):
#   free, budget       the free selection (rope-elite-l1.h5), per-layer ranks (--budget): ekv's default
#   free, uniform      the free selection, one latent rank for every layer (--cache-ratio)
#   llama.cpp          ekv-select-rope --layout llama.cpp (slots at one progression), one rank
#   transformers       ekv-select-rope --layout transformers (any multiset of slots), one rank
# Each is exported and measured by `ekv-check compare` on held-out text; no uptraining.
#   scripts/compare-layouts.sh [OUT]   (OUT defaults to out/; needs calib.h5 and rope-elite-l1.h5)
# EKV_COMPARE_WINDOWS (default 16) windows of 512 tokens; EKV_COMPARE_RATIOS (default "0.5 0.25
# 0.125"); EKV_COMPARE_LAYOUTS (default: all four, by key: budget uniform llama.cpp transformers);
# EKV_COMPARE_OBJECTIVE (default attention) the objective of the uniform and engine selections
# (the budget row keeps OUT's l1 selection); EKV_MODEL_NAME the model (scripts/fetch-model.sh
# --list; OUT must have been made from it).
# r per ratio: EKV_COMPARE_R (default "0.5:12 0.25:7 0.125:3", the values measured best on
# SmolLM2-135M); other ratios take 3/8 of the cache (r = 3F·d_h/8). llama.cpp holds at most
# chunks / KV heads elite chunks per head (distinct frequencies), so r is capped there.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="${1:-$ROOT/out}"
BIN="${EKV_BUILD_DIR:-$ROOT/build}/apps"
MODEL=$("$ROOT/scripts/fetch-model.sh" ${EKV_MODEL_NAME:+"$EKV_MODEL_NAME"})
CORPORA=$("$ROOT/scripts/make-corpora.sh")
WINDOWS="${EKV_COMPARE_WINDOWS:-16}"
for f in "$OUT/calib.h5" "$OUT/rope-elite-l1.h5"; do
  [ -f "$f" ] || { echo "$f is missing: run make (or scripts/run-pipeline.sh) first" >&2; exit 1; }
done
WORK="$OUT/layout-compare"
mkdir -p "$WORK"
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
info=$("$BIN/ekv-info" "$MODEL")
head_dim=$(sed -n 's/^ *head_dim: *//p' <<<"$info" | head -1)
kv_heads=$(sed -n 's/^ *kv_heads: *//p' <<<"$info" | head -1)
REFINED="--svd whitened --chunk-map auto --weighting attention --refit-output"
LAYOUTS=("free, budget|budget" "free, uniform|uniform" "llama.cpp|llama.cpp" "transformers|transformers")
{
  echo "| cache | layout | r | slots | ppl compressed | mean KL (nats) | top-1 agreement | mean layer error | cache elements / token (engine) |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for f in ${EKV_COMPARE_RATIOS:-0.5 0.25 0.125}; do
    for entry in "${LAYOUTS[@]}"; do
      IFS='|' read -r label key <<<"$entry"
      if [ -n "${EKV_COMPARE_LAYOUTS:-}" ] && [[ " $EKV_COMPARE_LAYOUTS " != *" $key "* ]]; then continue; fi
      r=$(tr ' ' '\n' <<<"${EKV_COMPARE_R:-0.5:12 0.25:7 0.125:3}" | awk -F: -v f="$f" '$1 == f {print $2}')
      [ -n "$r" ] || r=$(awk "BEGIN{print int($f * 3 * $head_dim / 8 + 0.5)}")
      if [ "$key" = llama.cpp ] && [ "$r" -gt $((head_dim / 2 / kv_heads)) ]; then r=$((head_dim / 2 / kv_heads)); fi
      name="$(tr -d . <<<"$key")-$f"
      echo "+ $label at $f (r = $r)" >&2
      rope="$OUT/rope-elite-l1.h5"
      slots="-"
      if [ "$key" != budget ]; then
        rope="$WORK/rope-$name.h5"
        layout=$key
        [ "$key" = uniform ] && layout=free
        slots=$("$BIN/ekv-select-rope" --model "$MODEL" --calib "$OUT/calib.h5" --r-max "$r" --layout "$layout" \
          --objective "${EKV_COMPARE_OBJECTIVE:-attention}" -o "$rope" --quiet | field slots)
        [ -n "$slots" ] || slots="-"
      fi
      ranks="--cache-ratio $f"
      [ "$key" = budget ] && ranks="--budget $f"
      # shellcheck disable=SC2086
      "$BIN/ekv-jlrd" --model "$MODEL" --rope "$rope" --calib "$OUT/calib.h5" --r "$r" --mode joint $REFINED $ranks \
        -o "$WORK/$name.h5" --quiet >/dev/null
      "$BIN/ekv-export" --model "$MODEL" --rope "$rope" --jlrd "$WORK/$name.h5" -o "$WORK/$name" --quiet >/dev/null
      engine="-"
      if [ "$key" != budget ]; then
        engine=$("$BIN/ekv-export" --model "$MODEL" --compressed "$WORK/$name" --format hf-deepseek \
          -o "$WORK/$name-engine" --quiet 2>/dev/null | field cache_elements_per_token || echo "-")
        rm -rf "${WORK:?}/$name-engine"
      fi
      line=$("$BIN/ekv-check" compare --model "$MODEL" --compressed "$WORK/$name" --text "$CORPORA/eval.txt" \
        --max-windows "$WINDOWS" -o "$WORK/$name.json" --quiet | grep '^final:')
      pct=$(awk "BEGIN{print $f * 100}")
      echo "| ${pct}% | $label | $r | $slots | $(field ppl_compressed <<<"$line") | $(field kl <<<"$line") |" \
           "$(field top1 <<<"$line") | $(field mean_layer_error <<<"$line") | $engine |"
      rm -rf "${WORK:?}/$name"  # the export itself (~600 MB); the report stays
    done
  done
  echo
  echo "($WINDOWS windows x 512 tokens of the evaluation corpus; KL(p_orig ‖ p_comp) and top-1 over every scored"
  echo "position; layer error: ‖o' − o‖/‖o‖ of the attention block with the original model's inputs; no uptraining."
  echo "Calibration: $OUT/calib.h5 on the calibration corpus. Engine cache: elements per token, all layers, of the"
  echo "hf-deepseek export (the GGUF's is the same where it can be written))"
} | tee "$OUT/layout-comparison.md"
