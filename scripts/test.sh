#!/usr/bin/env bash
# The test command: sets up (idempotent), builds, fetches the default model and the second
# family's (Qwen2.5-Coder-0.5B; both stay in the model cache between runs), runs every
# ctest label (unit, e2e, peer, scripts; gpu tests skip with a reason when no GPU is present),
# then, without arguments, the sanitizer job (scripts/sanitize.sh).
# Extra arguments go to ctest, e.g. scripts/test.sh -L unit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
start=$(date +%s)
phase() { echo "[test] $1 at $(($(date +%s) - start)) s" >&2; }
"$ROOT/scripts/setup.sh"
# The engine peers (a torch download and a llama.cpp build, first time only) are needed by one
# test: they install in the background while ekv builds and the models and corpora download.
engines_log=$(mktemp "${TMPDIR:-/tmp}/ekv-engines-setup.XXXXXX")
"$ROOT/scripts/setup.sh" --engines >"$engines_log" 2>&1 &
engines=$!
"$ROOT/scripts/build.sh"
phase "built"
"$ROOT/scripts/fetch-model.sh" >/dev/null
"$ROOT/scripts/fetch-model.sh" qwen2.5-coder-0.5b >/dev/null
"$ROOT/scripts/make-corpora.sh" >/dev/null
wait "$engines" || { cat "$engines_log" >&2; echo "[test] installing the engine peers failed" >&2; exit 1; }
grep -h "engine" "$engines_log" >&2 || true
rm -f "$engines_log"
phase "models, corpora and engine peers ready"
ctest --test-dir "${EKV_BUILD_DIR:-$ROOT/build}" --output-on-failure -j "$(nproc)" "$@"
phase "ctest passed"
# The sanitizer job (unit tests under ASan + UBSan, each fuzz target for 10 s): whole runs only.
[ $# -gt 0 ] || "$ROOT/scripts/sanitize.sh" 10
phase "total"
