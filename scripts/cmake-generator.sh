#!/usr/bin/env bash
# Prints the CMake generator for a build folder: the one it was configured with (CMake refuses
# to switch), else Ninja where it is installed (it compiles the objects of every library at
# once, where make waits for each library before starting the next: a cold build of the tools
# 145 s against 264 s on 2 cores, docs/results.md), else Unix Makefiles.
#   scripts/cmake-generator.sh BUILD_DIR
set -euo pipefail
cache="$1/CMakeCache.txt"
if [ -f "$cache" ] && grep -q '^CMAKE_GENERATOR:INTERNAL=' "$cache"; then
  sed -n 's/^CMAKE_GENERATOR:INTERNAL=//p' "$cache"
elif command -v ninja >/dev/null; then
  echo Ninja
else
  echo "Unix Makefiles"
fi
