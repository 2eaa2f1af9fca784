#!/usr/bin/env bash
# The test command: sets up (idempotent), builds, fetches the default model and the second
# family's (Qwen2.5-Coder-0.5B; both stay in the model cache between runs), runs every
# ctest label (unit, e2e, peer, scripts; gpu tests skip with a reason when no GPU is present),
# then, without arguments, the sanitizer job (scripts/sanitize.sh).
# Extra arguments go to ctest, e.g. scripts/test.sh -L unit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
start=$(date +%s)
"$ROOT/scripts/setup.sh" --engines
"$ROOT/scripts/build.sh"
"$ROOT/scripts/fetch-model.sh" >/dev/null
"$ROOT/scripts/fetch-model.sh" qwen2.5-coder-0.5b >/dev/null
"$ROOT/scripts/make-corpora.sh" >/dev/null
ctest --test-dir "${EKV_BUILD_DIR:-$ROOT/build}" --output-on-failure -j "$(nproc)" "$@"
# The sanitizer job (unit tests under ASan + UBSan, each fuzz target for 10 s): whole runs only.
[ $# -gt 0 ] || "$ROOT/scripts/sanitize.sh" 10
echo "[test] total $(($(date +%s) - start)) s" >&2
