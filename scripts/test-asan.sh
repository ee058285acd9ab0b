#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer build of the addon (binding.gyp reads LOCKSPACE_ASAN=1),
# made in a scratch copy of the tree so build/ stays as it is, then the Jest suite against it (by
# default the suites that drive the native code hardest; pass test paths to choose others). Any
# sanitizer report fails the run.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/lockspace-asan-XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$root"
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$work"
ln -s "$root/node_modules" "$work/node_modules"
cd "$work"
echo "test:asan: building with -fsanitize=address,undefined in $work"
LOCKSPACE_ASAN=1 npx node-gyp rebuild >build.log 2>&1 || { cat build.log; exit 1; }
npx tsc -p tsconfig.json
ldd build/Release/lockspace.node | grep -q libasan || { echo "test:asan: the addon is not instrumented"; exit 1; }
libasan=$(gcc -print-file-name=libasan.so)
# Node itself is not instrumented: keep leak detection off (Node frees little at exit) but stop at the
# first real report. Child processes (python3, lslocks, node) inherit the preload: that is fine.
export LD_PRELOAD="$libasan"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:exitcode=86:verify_asan_link_order=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(test/core.test.ts test/api.test.ts test/workers.test.ts test/wait.test.ts test/errors.test.ts test/libvirt.test.ts)
set +e
npx jest --runInBand "${suites[@]}" >jest.log 2>&1
status=$?
set -e
grep -E "Tests:|Test Suites:" jest.log || true
if grep -qE "ERROR: AddressSanitizer|runtime error:|SUMMARY: UndefinedBehaviorSanitizer" jest.log; then
  grep -E -A30 "ERROR: AddressSanitizer|runtime error:" jest.log | head -80
  echo "test:asan: sanitizer report"
  exit 1
fi
if [ $status -ne 0 ]; then
  tail -60 jest.log
  echo "test:asan: tests failed under the sanitizers"
  exit $status
fi
echo "test:asan: clean"
