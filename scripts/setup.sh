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
  build-essential cmake pkg-config ccache git unzip ca-certificates
  libeigen3-dev liblapacke-dev libopenblas-dev libhdf5-dev nlohmann-json3-dev libcli11-dev
  libgtest-dev libbenchmark-dev libssl-dev libpcre2-dev libicu-dev
  clang-14 libclang-rt-14-dev libomp-14-dev
  python3 python3-venv python3-pip python3-numpy python3-torch python3-h5py python3-matplotlib
  jargon-text dict-devil dict-gcide
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

# The venv must be built on Debian's python3, whose site-packages hold python3-torch.
VENV="$ROOT/.venv"
REQUIREMENTS="$ROOT/scripts/requirements-peer.txt"
STAMP="$VENV/.ekv-requirements.sha256"
want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  log "installing peer packages into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS"
  "$VENV/bin/python" -c "import torch, transformers, gguf, safetensors, tokenizers, numpy" \
    || { echo "[setup] the venv's peer packages do not import" >&2; exit 1; }
  echo "$want" >"$STAMP"
else
  log "venv: peer packages present"
fi

# The engine peers (.venv-engines, scripts/requirements-engines.txt): transformers' DeepseekV3 on
# PyPI's torch, and llama-cpp-python built from its source distribution (the llama.cpp it
# vendors; CPU only, its multimodal library left out). pip caches the built wheel, so a second
# set-up does not compile llama.cpp again.
[ "$ENGINE_PEERS" = 1 ] || exit 0
ENGINES="$ROOT/.venv-engines"
ENGINES_REQUIREMENTS="$ROOT/scripts/requirements-engines.txt"
ENGINES_STAMP="$ENGINES/.ekv-requirements.sha256"
want=$(sha256sum "$ENGINES_REQUIREMENTS" | cut -d' ' -f1)
if [ ! -x "$ENGINES/bin/python" ]; then
  log "creating $ENGINES"
  /usr/bin/python3 -m venv "$ENGINES"
fi
if [ "$(cat "$ENGINES_STAMP" 2>/dev/null)" != "$want" ]; then
  log "installing the engine peers into $ENGINES (first time: a 2.8 GB torch download and a llama.cpp build)"
  start=$(date +%s)
  CMAKE_ARGS="-DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$ENGINES/bin/python" -m pip install -q --disable-pip-version-check -r "$ENGINES_REQUIREMENTS"
  "$ENGINES/bin/python" -c "import torch, transformers, llama_cpp, safetensors, numpy" \
    || { echo "[setup] the engine peers do not import" >&2; exit 1; }
  echo "$want" >"$ENGINES_STAMP"
  log "engine peers installed in $(($(date +%s) - start)) s"
else
  log "engine venv: peers present"
fi
