#!/usr/bin/env bash
# Build the peer allocators for bench/micro.js and bench/replay.js into bench/build/:
#   dlmalloc.wasm            wasi-libc malloc/free/calloc/realloc/aligned_alloc
#                            (dlmalloc) + batched loop
#   mimalloc.wasm            mimalloc v3.4.3 (../shared/vendor/mimalloc-3.4.3.tar.gz,
#                            src/static.c, -DMI_MALLOC_OVERRIDE so it is the libc
#                            malloc) with the same exports and batched loop as
#                            dlmalloc.wasm; the source is unpacked to
#                            bench/build/mimalloc-3.4.3/ (MIMALLOC_TGZ=<file>
#                            names another copy of the tarball)
#   tlsf.wasm                AssemblyScript heap.alloc/free (TLSF) + batched loop
#   native_micro_mimalloc    bench/peers/native_micro.c linked with -lmimalloc
#   native_micro_glibc       the same program on glibc malloc
#   native_replay_mimalloc   bench/peers/native_replay.c (trace replay) with -lmimalloc
#   native_replay_glibc      the same program on glibc malloc
# Missing Debian packages are installed with apt-get (root or sudo needed).
# A peer that fails to build leaves bench/build/<peer>.unavailable holding
# the reason; bench/micro.js reports it instead of crashing. Exit status is 0
# as long as the script itself ran.
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/bench/build"
mkdir -p "$out"

log() { printf '[bench:peers] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else return 1
  fi
}

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

updated=0
ensure_pkgs() { # ensure_pkgs pkg... ; returns non-zero when any is still missing
  local missing=()
  for p in "$@"; do have_pkg "$p" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || { log "apt-get not found; missing: ${missing[*]}"; return 1; }
  log "installing ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive as_root apt-get install -y "${missing[@]}" >&2; then
    if [ $updated -eq 0 ]; then
      updated=1
      log "install failed; running apt-get update and retrying"
      as_root apt-get update >&2 || true
      DEBIAN_FRONTEND=noninteractive as_root apt-get install -y "${missing[@]}" >&2 || return 1
    else
      return 1
    fi
  fi
}

fail() { # fail peer reason
  log "$1 unavailable: $2"
  printf '%s\n' "$2" >"$out/$1.unavailable"
}

ok() { rm -f "$out/$1.unavailable"; log "$1 built"; }

# ---- dlmalloc (wasi-libc) --------------------------------------------------
build_dlmalloc() {
  if ! ensure_pkgs clang lld wasi-libc; then
    fail dlmalloc "could not install clang, lld or wasi-libc"; return
  fi
  local major
  major="$(clang --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n1)"
  # compiler-rt builtins for wasm32 (package name follows the clang major version)
  if ! ensure_pkgs "libclang-rt-${major}-dev-wasm32"; then
    fail dlmalloc "could not install libclang-rt-${major}-dev-wasm32"; return
  fi
  # the sysroot is the directory holding lib/wasm32-wasi/libc.a (Debian: /usr)
  local libc sysroot
  libc="$(dpkg -L wasi-libc 2>/dev/null | grep '/wasm32-wasi/libc\.a$' | head -n1)"
  if [ -z "$libc" ]; then fail dlmalloc "wasi-libc's libc.a not found"; return; fi
  sysroot="$(dirname "$(dirname "$(dirname "$libc")")")"
  local err
  if err="$(clang --target=wasm32-wasi --sysroot="$sysroot" -O2 -mexec-model=reactor \
      -Wl,--export=malloc -Wl,--export=free -Wl,--export=calloc -Wl,--export=realloc \
      -Wl,--export=aligned_alloc -Wl,--strip-all \
      "$here/dlmalloc_exports.c" -o "$out/dlmalloc.wasm" 2>&1)"; then
    ok dlmalloc
  else
    rm -f "$out/dlmalloc.wasm"
    fail dlmalloc "clang failed: $(printf '%s' "$err" | head -n3 | tr '\n' ' ')"
  fi
}

# ---- mimalloc v3 (wasm) ----------------------------------------------------
# Built like dlmalloc.wasm, from mimalloc's one-unit src/static.c:
#   -DMI_MALLOC_OVERRIDE   defines malloc/free/calloc/realloc/aligned_alloc, so
#                          wasi-libc's dlmalloc is not linked
#   -D_WASI_EMULATED_PROCESS_CLOCKS, -lwasi-emulated-process-clocks
#                          its wasi layer calls clock()
#   -DNDEBUG -DMI_DEBUG=0  release build (MI_SECURE 0, no stats)
# The module imports environ_sizes_get/environ_get (wasi-libc reads the
# environment for mimalloc's MIMALLOC_* options and exits when that fails) and
# clock_time_get; bench/lib/peers.js gives it an empty environment and a clock.
# Arenas are mimalloc's defaults (wasm32: 32 MiB, a quarter of the 128 MiB
# arena_reserve as wasm has no virtual reserve), grown with memory.grow.
mimalloc_tgz="${MIMALLOC_TGZ:-$root/../shared/vendor/mimalloc-3.4.3.tar.gz}"
mimalloc_src="$out/mimalloc-3.4.3"

# unpack the vendor tarball into bench/build/ (git-ignored) once; prints the error
unpack_mimalloc() {
  [ -f "$mimalloc_src/src/static.c" ] && return 0
  if [ ! -f "$mimalloc_tgz" ]; then echo "no mimalloc source at $mimalloc_tgz (set MIMALLOC_TGZ)"; return 1; fi
  local tmp
  tmp="$(mktemp -d "$out/.mimalloc-src.XXXXXX")" || return 1
  if ! tar -C "$tmp" -xzf "$mimalloc_tgz" 2>&1 || [ ! -f "$tmp/mimalloc-3.4.3/src/static.c" ]; then
    rm -rf "$tmp"; echo "cannot unpack $mimalloc_tgz (expected mimalloc-3.4.3/src/static.c)"; return 1
  fi
  rm -rf "$mimalloc_src"
  mv "$tmp/mimalloc-3.4.3" "$mimalloc_src" && rm -rf "$tmp"
}

build_mimalloc_wasm() {
  if ! ensure_pkgs clang lld wasi-libc; then
    fail mimalloc-wasm "could not install clang, lld or wasi-libc"; return
  fi
  local major
  major="$(clang --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n1)"
  if ! ensure_pkgs "libclang-rt-${major}-dev-wasm32"; then
    fail mimalloc-wasm "could not install libclang-rt-${major}-dev-wasm32"; return
  fi
  local libc sysroot err
  libc="$(dpkg -L wasi-libc 2>/dev/null | grep '/wasm32-wasi/libc\.a$' | head -n1)"
  if [ -z "$libc" ]; then fail mimalloc-wasm "wasi-libc's libc.a not found"; return; fi
  sysroot="$(dirname "$(dirname "$(dirname "$libc")")")"
  if ! err="$(unpack_mimalloc)"; then rm -f "$out/mimalloc.wasm"; fail mimalloc-wasm "$err"; return; fi
  if err="$(clang --target=wasm32-wasi --sysroot="$sysroot" -O2 -mexec-model=reactor \
      -DNDEBUG -DMI_DEBUG=0 -DMI_MALLOC_OVERRIDE -D_WASI_EMULATED_PROCESS_CLOCKS \
      -I"$mimalloc_src/include" \
      -Wl,--export=malloc -Wl,--export=free -Wl,--export=calloc -Wl,--export=realloc \
      -Wl,--export=aligned_alloc -Wl,--strip-all \
      "$mimalloc_src/src/static.c" "$here/dlmalloc_exports.c" -lwasi-emulated-process-clocks \
      -o "$out/mimalloc.wasm" 2>&1)"; then
    ok mimalloc-wasm
  else
    rm -f "$out/mimalloc.wasm"
    fail mimalloc-wasm "clang failed: $(printf '%s' "$err" | grep -v warning | head -n3 | tr '\n' ' ')"
  fi
}

# ---- TLSF (AssemblyScript) -------------------------------------------------
build_tlsf() {
  local asc="$root/node_modules/.bin/asc"
  if [ ! -x "$asc" ]; then
    fail tlsf "assemblyscript is not installed (run npm install)"; return
  fi
  local err
  if err="$(cd "$root" && "$asc" bench/peers/tlsf/index.ts -o "$out/tlsf.wasm" \
      --runtime minimal -O3 --noAssert 2>&1)"; then
    ok tlsf
  else
    rm -f "$out/tlsf.wasm"
    fail tlsf "asc failed: $(printf '%s' "$err" | head -n3 | tr '\n' ' ')"
  fi
}

# ---- native mimalloc / glibc -----------------------------------------------
build_native() {
  if ! ensure_pkgs gcc libc6-dev; then
    fail native-mimalloc "could not install gcc"; fail native-glibc "could not install gcc"; return
  fi
  local err
  if err="$(gcc -O2 -pthread "$here/native_micro.c" -o "$out/native_micro_glibc" 2>&1)"; then
    ok native-glibc
  else
    fail native-glibc "gcc failed: $(printf '%s' "$err" | head -n3 | tr '\n' ' ')"
  fi
  if ! ensure_pkgs libmimalloc-dev; then
    fail native-mimalloc "could not install libmimalloc-dev"; return
  fi
  if err="$(gcc -O2 -pthread -DUSE_MIMALLOC "$here/native_micro.c" -o "$out/native_micro_mimalloc" \
      -lmimalloc 2>&1)"; then
    ok native-mimalloc
  else
    fail native-mimalloc "gcc failed: $(printf '%s' "$err" | head -n3 | tr '\n' ' ')"
  fi
  # trace replay (bench/replay.js)
  if err="$(gcc -O2 "$here/native_replay.c" -o "$out/native_replay_glibc" 2>&1)"; then
    ok native-replay-glibc
  else
    fail native-replay-glibc "gcc failed: $(printf '%s' "$err" | head -n3 | tr '\n' ' ')"
  fi
  if err="$(gcc -O2 -DUSE_MIMALLOC "$here/native_replay.c" -o "$out/native_replay_mimalloc" \
      -lmimalloc 2>&1)"; then
    ok native-replay-mimalloc
  else
    fail native-replay-mimalloc "gcc failed: $(printf '%s' "$err" | head -n3 | tr '\n' ' ')"
  fi
}

build_dlmalloc
build_mimalloc_wasm
build_tlsf
build_native
exit 0
