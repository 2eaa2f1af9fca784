#!/usr/bin/env bash
# Builds the plain-text corpora from Debian packages (calib/README.md) into
# $EKV_CACHE/corpora (default ~/.cache/ekv/corpora) and prints that folder:
#   calib.txt  The Jargon File (jargon-text), decompressed as shipped
#   eval.txt   The Devil's Dictionary (dict-devil), the dictd database decompressed as shipped
#   train.txt  GCIDE, the Collaborative International Dictionary of English (dict-gcide), from its
#              first letter on (the dictd header, a licence notice eval.txt shares, is dropped):
#              the recovery (ekv-uptrain) text, a third source disjoint from the other two
#   train-broad.txt  a broad recovery text from five sources, none the calibration or evaluation
#              text: Python's documentation (python3.11-doc, its reStructuredText sources), Git's
#              (git-doc, AsciiDoc), the GNU Coding Standards (gnu-standards), Python's standard
#              library (libpython3.11-stdlib, code: the first 8 MB of its .py files in path order)
#              and GCIDE's first 8 MB; every file headed by its path, bytes that are not UTF-8 dropped
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

# files_of DIR PATTERN: the files under DIR named PATTERN, in a fixed (byte) order.
files_of() { find "$1" -type f -name "$2" -print0 | LC_ALL=C sort -z; }
# headed: each file (NUL-separated names on stdin) as "== path ==", its text, a blank line.
headed() { while IFS= read -r -d '' f; do printf '== %s ==\n' "$f"; cat "$f"; printf '\n'; done; }
# first_bytes N: the first N bytes of stdin; the writer's SIGPIPE after them is not a failure.
first_bytes() { head -c "$1"; cat >/dev/null; }
broad() {
  files_of /usr/share/doc/python3.11/html/_sources '*.txt' | headed
  files_of /usr/share/doc/git-doc '*.txt' | headed
  zcat /usr/share/doc/gnu-standards/standards.text.gz
  files_of /usr/lib/python3.11 '*.py' | headed | first_bytes 8000000
  printf '\n'
  zcat /usr/share/dictd/gcide.dict.dz | drop_dictd_header | first_bytes 8000000
}
if [ ! -s "$OUT/train-broad.txt" ]; then
  for need in /usr/share/doc/python3.11/html/_sources:python3.11-doc /usr/share/doc/git-doc:git-doc \
              /usr/share/doc/gnu-standards/standards.text.gz:gnu-standards /usr/lib/python3.11/os.py:libpython3.11-stdlib; do
    [ -e "${need%%:*}" ] || { echo "[corpora] ${need%%:*} is missing: install the Debian package ${need##*:} (scripts/setup.sh)" >&2; exit 1; }
  done
  broad | iconv -f UTF-8 -t UTF-8 -c >"$OUT/train-broad.txt.tmp"
  mv "$OUT/train-broad.txt.tmp" "$OUT/train-broad.txt"
  echo "[corpora] $OUT/train-broad.txt: $(wc -c <"$OUT/train-broad.txt") bytes from python3.11-doc, git-doc, gnu-standards, libpython3.11-stdlib, dict-gcide" >&2
fi
echo "$OUT"
