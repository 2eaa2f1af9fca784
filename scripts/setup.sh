#!/usr/bin/env bash
# Installs everything ekv needs on Debian 12: the build dependencies, the corpora, and a
# Python venv (.venv, with Debian's torch/numpy/h5py visible) holding the peer packages
# used by tests. Idempotent: a second run only checks and returns in about a second.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

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
