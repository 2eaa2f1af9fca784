#!/usr/bin/env bash
# Configures and builds ekv into build/ (Release with debug info, ccache when present, Ninja when
# installed: scripts/cmake-generator.sh).
#   scripts/build.sh [--tools] [cmake configure arguments, e.g. -DEKV_SANITIZE=ON]
# --tools builds the executables only (the main job's need), not the tests and benchmarks.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="${EKV_BUILD_DIR:-$ROOT/build}"
TARGET=()
if [ "${1:-}" = --tools ]; then
  TARGET=(--target tools)
  shift
fi
cmake -G "$("$ROOT/scripts/cmake-generator.sh" "$BUILD")" -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$BUILD" -j "$(nproc)" "${TARGET[@]}"
