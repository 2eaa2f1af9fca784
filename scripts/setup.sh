#!/usr/bin/env bash
# Installs everything ekv needs on Debian 12: the build dependencies, the corpora, and a
# Python venv (.venv, with Debian's torch/numpy/h5py visible) holding the peer packages
# used by tests; with --engines also the engine peers (.venv-engines: llama.cpp and a current
# transformers, which the tests run on ekv's engine exports; the main job does not need them).
# Idempotent: a second run only checks and returns in about a second.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ENGINE_PEERS=0
[ "${1:-}" = --engines ] && ENGINE_PEERS=1

# slurmctld, slurmd, slurm-client, munge: the sharding test starts a one-node Slurm cluster on loopback.
PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache git unzip ca-certificates
  libeigen3-dev liblapacke-dev libopenblas-dev libhdf5-dev nlohmann-json3-dev libcli11-dev
  libgtest-dev libbenchmark-dev libssl-dev libpcre2-dev libicu-dev
  clang-14 libclang-rt-14-dev libomp-14-dev
  python3 python3-venv python3-pip python3-numpy python3-torch python3-h5py python3-matplotlib
  jargon-text dict-devil dict-gcide python3.11-doc git-doc gnu-standards
  slurmctld slurmd slurm-client munge
)

log() { echo "[setup] $*" >&2; }

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "Debian packages: all ${#PACKAGES[@]} present"
fi

# ensure_venv DIR REQUIREMENTS IMPORTS WHAT [venv options]: a venv at DIR holding REQUIREMENTS
# (reinstalled when that file changes: its sha256 is stamped in DIR), checked by importing IMPORTS.
ensure_venv() {
  local dir=$1 requirements=$2 imports=$3 what=$4
  shift 4
  local stamp="$dir/.ekv-requirements.sha256" want start
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [ ! -x "$dir/bin/python" ]; then
    log "creating $dir"
    /usr/bin/python3 -m venv "$@" "$dir"
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    log "$dir: $what present"
    return
  fi
  log "installing $what into $dir"
  start=$(date +%s)
  "$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
  "$dir/bin/python" -c "import $imports" || { echo "[setup] $dir: the $what do not import" >&2; exit 1; }
  echo "$want" >"$stamp"
  log "$what installed in $(($(date +%s) - start)) s"
}

# The peer venv must be built on Debian's python3, whose site-packages hold python3-torch.
ensure_venv "$ROOT/.venv" "$ROOT/scripts/requirements-peer.txt" "torch, transformers, gguf, safetensors, tokenizers, numpy" \
  "peer packages" --system-site-packages

# The engine peers (.venv-engines, scripts/requirements-engines.txt): transformers' DeepseekV3 on
# PyPI's torch, and llama-cpp-python built from its source distribution (the llama.cpp it
# vendors; CPU only, its multimodal library left out; first time: a 2.8 GB torch download and a
# llama.cpp build). pip caches the built wheel, so a second set-up does not compile llama.cpp again.
[ "$ENGINE_PEERS" = 1 ] || exit 0
CMAKE_ARGS="-DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
  ensure_venv "$ROOT/.venv-engines" "$ROOT/scripts/requirements-engines.txt" "torch, transformers, llama_cpp, safetensors, numpy" \
  "engine peers"
