#!/usr/bin/env bash
# Prints N layer ranges a:b (b exclusive) that split MODEL's layers evenly, for sharding the
# per-layer steps (make ROPE_SHARDS=N, scripts/slurm-shards.sh):
#   scripts/layer-ranges.sh MODEL N [BIN]     e.g. "0:15 15:30" for 30 layers and N = 2
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -ge 2 ] || { echo "usage: scripts/layer-ranges.sh MODEL N [BIN]" >&2; exit 2; }
model=$1 n=$2 bin=${3:-$ROOT/build/apps}
layers=$("$bin/ekv-info" "$model" 2>/dev/null | sed -n 's/^layers: //p')
[ -n "$layers" ] || { echo "layer-ranges: ekv-info $model printed no layer count" >&2; exit 1; }
[[ $n =~ ^[1-9][0-9]*$ ]] && ((n <= layers)) || { echo "layer-ranges: N=$n must be in 1..$layers" >&2; exit 1; }
for ((i = 0; i < n; i++)); do printf '%s%d:%d' "$( ((i)) && echo ' ')" $((layers * i / n)) $((layers * (i + 1) / n)); done
echo
