#!/usr/bin/env bash
# The C++ core test (build/Release/core_test) under valgrind memcheck: any invalid access, use of
# uninitialised memory or definite leak fails the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=build/Release/core_test
[ -x "$bin" ] || { echo "valgrind-core: $bin is missing (npm run build:native)"; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind-core: valgrind is not installed"; exit 1; }
valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
  --show-leak-kinds=definite "$bin"
echo "valgrind-core: clean"
