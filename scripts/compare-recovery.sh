#!/usr/bin/env bash
# Which starting point wins once trained (docs/results.md, "Recovery: starting points"): at one
# cache ratio, three compressed models are recovered by ekv-uptrain with the same budget (the
# preset's [compare-recovery] section) and measured by `ekv-check compare` before and after:
#   elitekv    the pipeline's export ($OUT/model-elitekv, made with the preset)
#   paper      the paper's plain configuration: elite-l1, weight J-LRD, uniform rank, r = F·d_h/4
#   kv-latent  KV-Latent-style (arXiv 2507.11273): every cached key dim rotated, at evenly spaced
#              frequencies (select-rope --method uniform), keys given half the cache
#              (r = F·d_h/2); the non-elite keys dropped and the values in their own latent
#              (ekv-jlrd --mode values); the dropped keys stay dropped while training (k_b frozen)
#   scripts/compare-recovery.sh [OUT]    (needs make's calib.h5, rope-elite-l1.h5, model-elitekv)
# EKV_COMPARE_WINDOWS (default 16) evaluation windows; PRESET (default the main job's) gives the
# cache ratio ([jlrd] budget) and the recovery budget; EKV_RECOVERY_CONFIGS picks configurations.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="${1:-$ROOT/out}"
BIN="${EKV_BUILD_DIR:-$ROOT/build}/apps"
PRESET="${PRESET:-$ROOT/configs/smollm2-135m-25.toml}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
MODEL=$("$ROOT/scripts/fetch-model.sh")
CORPORA=$("$ROOT/scripts/make-corpora.sh")
WINDOWS="${EKV_COMPARE_WINDOWS:-16}"
for f in "$OUT/calib.h5" "$OUT/rope-elite-l1.h5" "$OUT/model-elitekv/config.json"; do
  [ -f "$f" ] || { echo "$f is missing: run make (or scripts/run-pipeline.sh) first" >&2; exit 1; }
done
grep -q '^\[compare-recovery\]' "$PRESET" || { echo "$PRESET has no [compare-recovery] section" >&2; exit 1; }
ratio=$(sed -n '/^\[jlrd\]/,/^\[/s/^budget *= *\([0-9.]*\).*/\1/p' "$PRESET")
[ -n "$ratio" ] || { echo "$PRESET: [jlrd] has no budget (the cache ratio)" >&2; exit 1; }
head_dim=$("$BIN/ekv-info" "$MODEL" | sed -n 's/.*head_dim[ =:]*\([0-9]*\).*/\1/p' | head -1)
[ -n "$head_dim" ] || { echo "ekv-info $MODEL printed no head_dim" >&2; exit 1; }
WORK="$OUT/recovery-compare"
mkdir -p "$WORK"
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
compare() {  # compare EXPORT NAME: the final line of ekv-check compare on held-out text
  "$BIN/ekv-check" compare --model "$MODEL" --compressed "$1" --text "$CORPORA/eval.txt" \
    --max-windows "$WINDOWS" -o "$WORK/$2.json" --quiet | grep '^final:'
}
row() {  # row FINAL-LINE: ppl / KL / top-1
  echo "$(field ppl_compressed <<<"$1") / $(field kl <<<"$1") / $(field top1 <<<"$1")"
}
heldout() {  # the training text's held-out KL before → after, from the recovered export's provenance
  "$PYTHON" -c 'import json,sys; s=json.load(open(sys.argv[1]))["ekv_uptrain"]["summary"]
print("%.3f → %.3f" % (s["before"]["kl"], s["after"]["kl"]))' "$1/config.json"
}

r_paper=$(awk "BEGIN{print int($ratio * $head_dim / 4 + 0.5)}")
r_latent=$(awk "BEGIN{print int($ratio * $head_dim / 2 + 0.5)}")
make_start() {  # make_start NAME: the training-free export of a configuration in $WORK/NAME
  local name=$1
  [ -f "$WORK/$name/config.json" ] && return 0
  case $name in
    paper)
      "$BIN/ekv-jlrd" --model "$MODEL" --rope "$OUT/rope-elite-l1.h5" --calib "$OUT/calib.h5" --r "$r_paper" \
        --mode joint --svd weight --cache-ratio "$ratio" -o "$WORK/paper.h5" --quiet >/dev/null
      "$BIN/ekv-export" --model "$MODEL" --rope "$OUT/rope-elite-l1.h5" --jlrd "$WORK/paper.h5" -o "$WORK/paper" --quiet >&2 ;;
    kv-latent)
      "$BIN/ekv-select-rope" --model "$MODEL" --calib "$OUT/calib.h5" --method uniform --r-max "$r_latent" \
        -o "$WORK/rope-uniform.h5" --quiet >&2
      "$BIN/ekv-jlrd" --model "$MODEL" --rope "$WORK/rope-uniform.h5" --calib "$OUT/calib.h5" --r "$r_latent" \
        --mode values --svd whitened --cache-ratio "$ratio" -o "$WORK/kv-latent.h5" --quiet >/dev/null
      "$BIN/ekv-export" --model "$MODEL" --rope "$WORK/rope-uniform.h5" --jlrd "$WORK/kv-latent.h5" \
        -o "$WORK/kv-latent" --quiet >&2 ;;
  esac
}

{
  echo "| start | r | before: ppl / KL / top-1 | after: ppl / KL / top-1 | training text held-out KL | ekv-uptrain wall |"
  echo "|---|---|---|---|---|---|"
  for name in ${EKV_RECOVERY_CONFIGS:-elitekv paper kv-latent}; do
    echo "+ $name" >&2
    case $name in
      elitekv) start="$OUT/model-elitekv"; r=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["r"])' "$OUT/fidelity.json");
               train=() ;;
      paper) make_start paper; start="$WORK/paper"; r=$r_paper; train=() ;;
      kv-latent) make_start kv-latent; start="$WORK/kv-latent"; r=$r_latent; train=(--train q,k_rope,kv_a,v_b,o) ;;
      *) echo "unknown configuration $name (elitekv, paper, kv-latent)" >&2; exit 1 ;;
    esac
    before=$(compare "$start" "$name-before")
    t0=$(date +%s)
    "$BIN/ekv-uptrain" --config "$PRESET" --config-section compare-recovery "${train[@]}" --export "$start" \
      --model "$MODEL" --text "$CORPORA/train.txt" -o "$WORK/$name-recovered" >&2  # the table is stdout
    wall=$(( $(date +%s) - t0 ))
    after=$(compare "$WORK/$name-recovered" "$name-after")
    echo "| $name | $r | $(row "$before") | $(row "$after") | $(heldout "$WORK/$name-recovered") |" \
         "$((wall / 60)) min $((wall % 60)) s |"
    [ "$name" = elitekv ] || rm -rf "${WORK:?}/$name"            # the training-free exports (~600 MB each)
    rm -rf "${WORK:?}/$name-recovered"
  done
  echo
  echo "(cache ratio $ratio; $WINDOWS windows x 512 tokens of the evaluation corpus, ppl / KL(p_orig ‖ p_comp) / top-1;"
  echo "recovery: ekv-uptrain [compare-recovery] of $(basename "$PRESET") on the training corpus, the same budget for each)"
} | tee "$OUT/recovery-comparison.md"
