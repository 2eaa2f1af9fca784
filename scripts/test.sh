#!/usr/bin/env bash
# The test command: sets up (idempotent), builds, fetches the default model, runs every
# ctest label (unit, e2e, peer, scripts; gpu tests skip with a reason when no GPU is present).
# Extra arguments go to ctest, e.g. scripts/test.sh -L unit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
start=$(date +%s)
"$ROOT/scripts/setup.sh"
"$ROOT/scripts/build.sh"
"$ROOT/scripts/fetch-model.sh" >/dev/null
"$ROOT/scripts/make-corpora.sh" >/dev/null
ctest --test-dir "${EKV_BUILD_DIR:-$ROOT/build}" --output-on-failure -j "$(nproc)" "$@"
echo "[test] total $(($(date +%s) - start)) s" >&2
