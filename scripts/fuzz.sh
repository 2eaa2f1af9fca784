#!/usr/bin/env bash
# Runs the libFuzzer targets (fuzz/) built by the sanitize preset, each for SECONDS, on its seed
# corpus (fuzz/seeds/TARGET, never modified: new inputs go to a work corpus) with its
# dictionary, after replaying the saved regressions (fuzz/regressions/TARGET). Prints one line a
# target: executions, executions/s, coverage (edges) and features, corpus size, crashes.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default 60 s, every target)
# Builds build-sanitize first (cmake --preset sanitize). Crashing inputs are kept in
# $EKV_FUZZ_WORK/crashes (default build-sanitize/fuzz-work); the exit status is 1 if any.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="$ROOT/build-sanitize"
SECONDS_EACH="${1:-60}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(fuzz_gguf fuzz_safetensors fuzz_tokenizer_json fuzz_config_json fuzz_artifact)
WORK="${EKV_FUZZ_WORK:-$BUILD/fuzz-work}"

(cd "$ROOT" && cmake --preset sanitize -G "$(scripts/cmake-generator.sh "$BUILD")" >/dev/null && cmake --build "$BUILD" -j "$(nproc)" --target fuzz_targets >/dev/null)
mkdir -p "$WORK/crashes"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
failed=0
for target in "${TARGETS[@]}"; do
  binary="$BUILD/fuzz/$target"
  log="$WORK/$target.log"
  corpus="$WORK/corpus/$target"
  mkdir -p "$corpus"
  regressions=("$ROOT/fuzz/regressions/$target"/*)
  if [ -e "${regressions[0]}" ]; then  # each saved crash must now be a clear error
    "$binary" "${regressions[@]}" >"$WORK/$target.regressions.log" 2>&1 \
      || { echo "target=$target regression failed (see $WORK/$target.regressions.log)" >&2; failed=1; continue; }
  fi
  rc=0
  "$binary" "$corpus" "$ROOT/fuzz/seeds/$target" -dict="$ROOT/fuzz/dict/${target#fuzz_}.dict" \
    -max_total_time="$SECONDS_EACH" -print_final_stats=1 -artifact_prefix="$WORK/crashes/$target-" \
    -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1 || rc=$?
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  crashes=$(find "$WORK/crashes" -name "$target-*" | wc -l)
  echo "target=$target seconds=$SECONDS_EACH execs=${execs:-0} execs_per_s=${rate:-0} cov=${cov:-?} ft=${ft:-?}" \
       "corpus=$(find "$corpus" -type f | wc -l) crashes=$crashes rc=$rc"
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    failed=1
    tail -30 "$log" >&2
  fi
done
exit $failed
