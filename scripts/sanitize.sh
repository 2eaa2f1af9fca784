#!/usr/bin/env bash
# The sanitizer job: builds the unit tests and the fuzz targets with clang, ASan and UBSan
# (cmake --preset sanitize, build-sanitize/), runs every unit test under them (any finding fails:
# UBSan does not recover, LeakSanitizer is on), then each fuzz target for SECONDS on its seeds
# and saved regressions (scripts/fuzz.sh). scripts/test.sh runs it with 10 s a target.
#   scripts/sanitize.sh [SECONDS]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_EACH="${1:-10}"
start=$(date +%s)
cd "$ROOT"
cmake --preset sanitize -G "$(scripts/cmake-generator.sh build-sanitize)" >/dev/null
cmake --build build-sanitize -j "$(nproc)" --target ekv_unit_tests fuzz_targets >/dev/null
echo "[sanitize] built in $(($(date +%s) - start)) s" >&2
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
build-sanitize/tests/ekv_unit_tests --gtest_brief=1 >build-sanitize/unit-tests.log 2>&1 \
  || { tail -60 build-sanitize/unit-tests.log >&2; echo "[sanitize] unit tests failed under ASan/UBSan" >&2; exit 1; }
grep -E "^\[  PASSED  \]" build-sanitize/unit-tests.log >&2
echo "[sanitize] unit tests passed at $(($(date +%s) - start)) s" >&2
EKV_FUZZ_WORK="$ROOT/build-sanitize/fuzz-ci" scripts/fuzz.sh "$SECONDS_EACH"
echo "[sanitize] total $(($(date +%s) - start)) s" >&2
