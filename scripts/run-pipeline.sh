#!/usr/bin/env bash
# The main job: set-up, build, fetch the default model and corpora, then `make` (the Makefile
# holds the pipeline: every artifact a target, so a re-run does only what changed and a failed
# run resumes at the failed step). It describes the model (ekv-info), measures its perplexity,
# calibrates on 64 x 512 tokens of the calibration corpus, selects the elite RoPE chunks, runs
# J-LRD at 25% cache with the output-aware options, exports the compressed model, checks its
# decoding and ends with its fidelity report against the original on held-out text and the
# report a person reads (out/report.md).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="${EKV_OUT:-$ROOT/out}"
TARGETS=(all)
while (($#)); do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --compare) TARGETS+=(compare); shift ;;
    --ablation) TARGETS+=(ablation); shift ;;
    -h|--help)
      echo "usage: scripts/run-pipeline.sh [--out DIR] [--compare] [--ablation]"
      echo "  set-up, build, model and corpora, then make: info, perplexity of the original, calibrate,"
      echo "  select RoPE, J-LRD at 25%, export, decode check, fidelity report (DIR/fidelity.json) and"
      echo "  the report (DIR/report.md: tables, figures, the commands)."
      echo "  --compare   also the RoPE-method and J-LRD-variant comparison tables (make compare, ~10 min)"
      echo "  --ablation  also the fidelity ablation at 50/25/12.5% cache (make ablation, about an hour)"
      echo "  Re-running does only what changed; make -C $ROOT OUT=DIR [R=.. CACHE=..] runs the steps alone."
      exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
timed() {  # timed NAME COMMAND...: runs COMMAND and prints how long it took
  local name=$1 t0=$(date +%s); shift
  echo "== $name: $*" >&2
  "$@"
  echo "== $name done in $(($(date +%s) - t0)) s" >&2
}
timed setup "$ROOT/scripts/setup.sh"
timed build "$ROOT/scripts/build.sh" --tools  # the tests build with scripts/test.sh
timed fetch "$ROOT/scripts/fetch-model.sh" >/dev/null
timed corpora "$ROOT/scripts/make-corpora.sh" >/dev/null
timed pipeline make -C "$ROOT" --no-print-directory OUT="$OUT" BUILD="${EKV_BUILD_DIR:-$ROOT/build}" "${TARGETS[@]}"
