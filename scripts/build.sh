#!/usr/bin/env bash
# Configures and builds ekv into build/ (Release with debug info, ccache when present).
# Extra arguments go to cmake's configure step, e.g. -DEKV_SANITIZE=ON.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="${EKV_BUILD_DIR:-$ROOT/build}"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$BUILD" -j "$(nproc)"
