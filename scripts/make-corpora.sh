#!/usr/bin/env bash
# Builds the plain-text corpora from Debian packages (calib/README.md) into
# $EKV_CACHE/corpora (default ~/.cache/ekv/corpora) and prints that folder:
#   calib.txt  The Jargon File (jargon-text), decompressed as shipped
#   eval.txt   The Devil's Dictionary (dict-devil), the dictd database decompressed as shipped
#   train.txt  GCIDE, the Collaborative International Dictionary of English (dict-gcide), from its
#              first letter on (the dictd header, a licence notice eval.txt shares, is dropped):
#              the recovery (ekv-uptrain) text, a third source disjoint from the other two
# Idempotent; the files are rebuilt only when missing.
set -euo pipefail
CACHE="${EKV_CACHE:-$HOME/.cache/ekv}"
OUT="$CACHE/corpora"
mkdir -p "$OUT"
build() {  # build NAME SOURCE PACKAGE [FILTER]
  local name=$1 source=$2 package=$3 filter=${4:-cat}
  [ -s "$OUT/$name" ] && return 0
  [ -f "$source" ] || { echo "[corpora] $source is missing: install the Debian package $package (scripts/setup.sh)" >&2; exit 1; }
  zcat "$source" | $filter >"$OUT/$name.tmp"
  mv "$OUT/$name.tmp" "$OUT/$name"
  echo "[corpora] $OUT/$name: $(wc -c <"$OUT/$name") bytes from $package" >&2
}
build calib.txt /usr/share/doc/jargon-text/jargon.txt.gz jargon-text
build eval.txt /usr/share/dictd/devil.dict.dz dict-devil
# GCIDE's dictd header repeats the licence notice the evaluation text's header has: drop it.
drop_dictd_header() { awk 'started || /Begin file 1 of 26/ { started = 1; print }'; }
build train.txt /usr/share/dictd/gcide.dict.dz dict-gcide drop_dictd_header
echo "$OUT"
