#!/usr/bin/env bash
# `npm run test:asan [-- jest args]`: the Jest suite against an AddressSanitizer + UndefinedBehavior-
# Sanitizer build of the addon and of core_test (binding.gyp turns them on with LOCKSPACE_ASAN=1).
# node-gyp has no separate build directory, so the build happens in a scratch copy of the tree (tracked
# and untracked-but-not-ignored files; node_modules symlinked) and build/ here is left alone. No
# arguments: the whole suite; arguments go to jest (e.g. test paths for a reduced set).
# Node itself is not instrumented: libasan is preloaded, leak detection is off (Node does not free
# everything at exit), the tests that run a child without /proc are left out (see below), and every
# process of the run (Jest workers, node fixtures, python checkers) writes any sanitizer report to a
# log file; the run fails if there is one, or if a test fails.
# LOCKSPACE_MODEL_RUNS defaults to 300 here (the model test is about semantics; 2000 in `npm test`).
set -euo pipefail
unset LOCKSPACE_BINARY # this run tests its own sanitizer build
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/lockspace-asan-XXXXXX")
chmod 755 "$work" # some fault tests run a fixture as an unprivileged user
keep=${LOCKSPACE_ASAN_KEEP:-0}
cleanup() { if [ "$keep" = 1 ]; then echo "test:asan: kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

cd "$root"
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$work"
rm -rf "$work/build" "$work/dist" "$work/prebuilds" # no prebuilt binary to fall back on
ln -s "$root/node_modules" "$work/node_modules"
cd "$work"

echo "test:asan: building with -fsanitize=address,undefined in $work"
if ! LOCKSPACE_ASAN=1 npx --no-install node-gyp rebuild >build.log 2>&1; then
  tail -50 build.log
  echo "test:asan: build failed"
  exit 1
fi
for bin in build/Release/lockspace.node build/Release/core_test; do
  libs=$(ldd "$bin") # (not piped into grep -q: with pipefail, ldd's SIGPIPE would read as a failure)
  if [[ $libs != *libasan* ]]; then
    echo "test:asan: $bin is not instrumented (is LOCKSPACE_ASAN read by binding.gyp?)"
    exit 1
  fi
done
npx --no-install tsc -p tsconfig.json

libasan=$(gcc -print-file-name=libasan.so)
[ -f "$libasan" ] || { echo "test:asan: libasan not found ($libasan)"; exit 1; }
mkdir -p "$work/reports"
export LD_PRELOAD="$libasan"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:exitcode=86:verify_asan_link_order=0:log_path=$work/reports/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$work/reports/ubsan"
export LOCKSPACE_MODEL_RUNS="${LOCKSPACE_MODEL_RUNS:-300}"

set +e
# ASan's runtime reads /proc at exit (LeakSanitizer's thread list, even with detect_leaks=0): a process
# that runs without /proc cannot pass under it. The tests that hide /proc run in `npm test` only.
npx --no-install jest --testNamePattern '^(?!.*without /proc)' "$@" >jest.log 2>&1
status=$?
set -e
unset LD_PRELOAD

grep -E "^(Tests|Test Suites):" jest.log || true
reports=$(find "$work/reports" -type f | sort)
if [ -n "$reports" ]; then
  for f in $reports; do
    echo "---- $f"
    head -60 "$f"
  done
  echo "test:asan: sanitizer report(s) above"
  exit 1
fi
if [ $status -ne 0 ]; then
  grep -E "^\s+(✕|●)" jest.log | head -40 || true
  tail -40 jest.log
  echo "test:asan: tests failed under the sanitizers"
  exit $status
fi
echo "test:asan: clean (no sanitizer report)"
