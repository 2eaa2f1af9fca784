#!/usr/bin/env bash
# Builds the plain-text corpora from Debian packages (calib/README.md) into
# $EKV_CACHE/corpora (default ~/.cache/ekv/corpora) and prints that folder:
#   calib.txt  The Jargon File (jargon-text), decompressed as shipped
#   eval.txt   The Devil's Dictionary (dict-devil), the dictd database decompressed as shipped
# Idempotent; the files are rebuilt only when missing.
set -euo pipefail
CACHE="${EKV_CACHE:-$HOME/.cache/ekv}"
OUT="$CACHE/corpora"
mkdir -p "$OUT"
build() {  # build NAME SOURCE PACKAGE
  local name=$1 source=$2 package=$3
  [ -s "$OUT/$name" ] && return 0
  [ -f "$source" ] || { echo "[corpora] $source is missing: install the Debian package $package (scripts/setup.sh)" >&2; exit 1; }
  zcat "$source" >"$OUT/$name.tmp"
  mv "$OUT/$name.tmp" "$OUT/$name"
  echo "[corpora] $OUT/$name: $(wc -c <"$OUT/$name") bytes from $package" >&2
}
build calib.txt /usr/share/doc/jargon-text/jargon.txt.gz jargon-text
build eval.txt /usr/share/dictd/devil.dict.dz dict-devil
echo "$OUT"
