#!/usr/bin/env bash
# What the compressed cache buys in llama.cpp itself (docs/results.md, "The payoff in llama.cpp"):
# the original model and the main job's recovered model, both as f16 GGUFs, side by side:
#   - KV cache bytes per token, as llama.cpp reports them (llama_kv_cache: size = ...);
#   - decode tokens/s at context depth 0, 2K and 8K (llama-bench -d), one sequence;
#   - decode speed of 1 and 8 parallel sequences, each at 8K depth (llama-batched-bench; the 8K
#     prompt is shared, -pps, so it is computed once: the decode steps still attend over all of it);
#   - the largest context (tokens, all sequences together) whose KV cache fits a memory cap.
#     bench/llama-cpp-payoff.sh [OUT]   (OUT: the pipeline's folder with model-uptrained/; default out)
# llama.cpp's benchmark tools are built from the source distribution of llama-cpp-python
# 0.3.36 (the llama.cpp the engine test uses) into $EKV_CACHE/llama.cpp-0.3.36, once. Timings
# depend on the machine and its load: state both with the numbers.
# EKV_THREADS (default 2), EKV_DEPTHS (default "0,2048,8192"), EKV_REPEATS (llama-bench -r, default 1),
# EKV_KV_CAP_MIB (default 1024).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="${1:-$ROOT/out}"
BIN="${EKV_BUILD_DIR:-$ROOT/build}/apps"
CACHE="${EKV_CACHE:-$HOME/.cache/ekv}"
THREADS="${EKV_THREADS:-2}"
DEPTHS="${EKV_DEPTHS:-0,2048,8192}"
CAP_MIB="${EKV_KV_CAP_MIB:-1024}"
MODEL=$("$ROOT/scripts/fetch-model.sh" ${EKV_MODEL_NAME:+"$EKV_MODEL_NAME"})
[ -f "$OUT/model-uptrained/config.json" ] || { echo "$OUT/model-uptrained is missing: run make first" >&2; exit 1; }
log() { echo "[payoff] $*" >&2; }

LLAMA="$CACHE/llama.cpp-0.3.36"
TOOLS="$LLAMA/build/bin"
if [ ! -x "$TOOLS/llama-batched-bench" ]; then
  log "building llama.cpp's bench tools from llama-cpp-python 0.3.36's source distribution into $LLAMA"
  mkdir -p "$LLAMA"
  python3 -m pip download -q --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d "$LLAMA"
  tar -xzf "$LLAMA"/llama_cpp_python-0.3.36.tar.gz -C "$LLAMA"
  cmake -S "$LLAMA/llama_cpp_python-0.3.36/vendor/llama.cpp" -B "$LLAMA/build" -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
  cmake --build "$LLAMA/build" -j "$(nproc)" --target llama-bench llama-batched-bench llama-quantize >/dev/null
fi

WORK="$OUT/payoff"
mkdir -p "$WORK"
[ -f "$WORK/original-f16.gguf" ] || "$TOOLS/llama-quantize" --allow-requantize "$MODEL" "$WORK/original-f16.gguf" F16 \
  >"$WORK/quantize.log" 2>&1
"$BIN/ekv-export" --model "$MODEL" --compressed "$OUT/model-uptrained" --format gguf --dtype f16 \
  -o "$WORK/compressed-f16.gguf" --quiet >"$WORK/export.txt"

{
  echo "## llama.cpp payoff: original vs EliteKV (f16 weights, f16 cache, $THREADS threads, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
  echo
  for name in original compressed; do
    m="$WORK/$name-f16.gguf"
    line=$("$TOOLS/llama-batched-bench" -m "$m" -c 4096 -b 512 -ub 512 -npp 128 -ntg 1 -npl 1 -t "$THREADS" -lv 4 2>&1 \
      | grep -m1 "llama_kv_cache: size" | sed "s/^.*llama_kv_cache/llama_kv_cache/" || true)  # -lv 4: llama.cpp's info log holds the cache size
    [ -n "$line" ] || { echo "llama.cpp reported no KV cache size for $m" >&2; exit 1; }
    mib=$(sed -n 's/.*size = *\([0-9.]*\) MiB.*/\1/p' <<<"$line")
    per_token=$(awk "BEGIN{printf \"%.0f\", $mib * 1048576 / 4096}")
    fits=$(awk "BEGIN{printf \"%.0f\", $CAP_MIB * 1048576 / $per_token}")
    echo "- $name: KV cache $per_token bytes per token (llama.cpp: \`$line\`); a $CAP_MIB MiB cache holds $fits tokens"
  done
  echo
  echo "### Decode at depth (llama-bench, one sequence)"
  echo
  # Flash attention off and on: llama.cpp's default (auto) turns it on, and which is faster differs
  # between the two attentions (the latent one reads a 96-wide key and a 54-wide value view of it).
  "$TOOLS/llama-bench" -m "$WORK/original-f16.gguf" -m "$WORK/compressed-f16.gguf" -p 0 -n 32 -d "$DEPTHS" \
    -fa 0,1 -t "$THREADS" -r "${EKV_REPEATS:-1}" -o md 2>/dev/null
  echo
  echo "### 1 and 8 parallel sequences at 8192 tokens of depth (llama-batched-bench, shared prompt)"
  echo
  for name in original compressed; do
    for fa in off on; do
      echo "$name, flash attention $fa:"
      echo
      "$TOOLS/llama-batched-bench" -m "$WORK/$name-f16.gguf" -c 8704 -b 2048 -ub 512 -npp 8192 -ntg 32 -npl 1,8 -pps -kvu \
        -fa "$fa" -t "$THREADS" 2>/dev/null | grep "^|"
      echo
    done
  done
} | tee "$WORK/payoff.md"
