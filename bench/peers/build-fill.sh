#!/usr/bin/env bash
# The wasm peers of `node bench/fill.js` (fill to NULL in a 64 MiB region):
# the same sources as bench/peers/build.sh's dlmalloc.wasm and tlsf.wasm,
# linked with a memory whose MAXIMUM is 64 MiB (1024 pages) and whose initial
# size is the toolchain's default (just the static data and stack), so the
# allocator grows its memory page by page and gets NULL (dlmalloc: sbrk fails)
# or a trap (AssemblyScript's TLSF calls unreachable() when memory.grow fails)
# once the 64 MiB are used up (mimalloc: memory.grow fails, malloc returns NULL).
#
#   bench/build/fill/dlmalloc.wasm   clang -O2 wasm32-wasi, wasi-libc malloc/free,
#                                    --max-memory=64 MiB, exports __heap_base
#   bench/build/fill/tlsf.wasm       asc --runtime minimal -O3 --noAssert
#                                    --maximumMemory 1024
#   bench/build/fill/mimalloc.wasm   mimalloc v3.4.3 as bench/peers/build.sh's
#                                    mimalloc.wasm (source unpacked to
#                                    bench/build/mimalloc-3.4.3/), --max-memory=64 MiB,
#                                    exports __heap_base, and
#                                    -DMI_DEFAULT_ARENA_RESERVE=32768 (KiB), see below
#
# Missing clang/lld/wasi-libc are installed by running bench/peers/build.sh
# first. Exits non-zero, with the reason on stderr, when a peer cannot be built
# (bench/fill.js then stops; pass --peers= without that peer to run the rest).
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/bench/build/fill"
mkdir -p "$out"
MAX_BYTES=$((64 * 1024 * 1024))
MAX_PAGES=$((MAX_BYTES / 65536))
log() { printf '[bench:fill-peers] %s\n' "$*" >&2; }

want="${*:-dlmalloc tlsf mimalloc}"
status=0

find_sysroot() {
  local libc
  libc="$(dpkg -L wasi-libc 2>/dev/null | grep '/wasm32-wasi/libc\.a$' | head -n1)"
  [ -n "$libc" ] && dirname "$(dirname "$(dirname "$libc")")"
}

build_dlmalloc() {
  local sysroot err
  sysroot="$(find_sysroot)"
  if ! command -v clang >/dev/null 2>&1 || [ -z "$sysroot" ]; then
    log "clang or wasi-libc missing: running bench/peers/build.sh to install them"
    bash "$here/build.sh" >&2
    sysroot="$(find_sysroot)"
  fi
  if ! command -v clang >/dev/null 2>&1 || [ -z "$sysroot" ]; then
    log "dlmalloc: clang or wasi-libc is not installed (see bench/build/dlmalloc.unavailable)"; return 1
  fi
  if err="$(clang --target=wasm32-wasi --sysroot="$sysroot" -O2 -mexec-model=reactor \
      -Wl,--export=malloc -Wl,--export=free -Wl,--export=__heap_base \
      -Wl,--max-memory=$MAX_BYTES -Wl,--strip-all \
      "$here/dlmalloc_exports.c" -o "$out/dlmalloc.wasm" 2>&1)"; then
    log "dlmalloc built (max memory $MAX_BYTES bytes)"
  else
    rm -f "$out/dlmalloc.wasm"
    log "dlmalloc: clang failed: $err"; return 1
  fi
}

# mimalloc's arena reserve. wasm has no virtual reserve, so mimalloc reserves a
# quarter of the arena_reserve option and takes it from memory.grow at once;
# an arena is a multiple of 8 MiB (256 slices of 32 KiB on wasm32) and at least
# the request + 8 MiB rounded up to 8 MiB (16 MiB for a page). When no new
# arena fits, pages come straight from memory.grow, over-allocated for their
# 32 KiB alignment: a 32 KiB page costs 128 KiB of memory. Defaults (32 MiB
# arenas): one arena fits in 64 MiB, the other ~31.5 MiB go to such pages, and
# small-block rows fill to ~54%. -DMI_DEFAULT_ARENA_RESERVE=32768 (KiB: 8 MiB
# asked, 16 MiB arenas): three arenas (48 MiB) fit, small rows ~70%. Larger
# first arenas (up to 56 MiB) fill small rows further but large-block rows less
# (measured once over all 16 cells: mean 71.6% at 16 MiB, 71.1% at 56 MiB).
MIMALLOC_ARENA_RESERVE_KIB=32768

build_mimalloc() {
  local sysroot err
  sysroot="$(find_sysroot)"
  local src="$root/bench/build/mimalloc-3.4.3"
  if [ ! -f "$src/src/static.c" ] || ! command -v clang >/dev/null 2>&1 || [ -z "$sysroot" ]; then
    log "mimalloc source, clang or wasi-libc missing: running bench/peers/build.sh"
    bash "$here/build.sh" >&2
    sysroot="$(find_sysroot)"
  fi
  if [ ! -f "$src/src/static.c" ]; then
    log "mimalloc: source not unpacked (see bench/build/mimalloc-wasm.unavailable)"; return 1
  fi
  if ! command -v clang >/dev/null 2>&1 || [ -z "$sysroot" ]; then
    log "mimalloc: clang or wasi-libc is not installed (see bench/build/mimalloc-wasm.unavailable)"; return 1
  fi
  if err="$(clang --target=wasm32-wasi --sysroot="$sysroot" -O2 -mexec-model=reactor \
      -DNDEBUG -DMI_DEBUG=0 -DMI_MALLOC_OVERRIDE -D_WASI_EMULATED_PROCESS_CLOCKS \
      -DMI_DEFAULT_ARENA_RESERVE=${MIMALLOC_ARENA_RESERVE_KIB}L -I"$src/include" \
      -Wl,--export=malloc -Wl,--export=free -Wl,--export=__heap_base \
      -Wl,--max-memory=$MAX_BYTES -Wl,--strip-all \
      "$src/src/static.c" "$here/dlmalloc_exports.c" -lwasi-emulated-process-clocks \
      -o "$out/mimalloc.wasm" 2>&1)"; then
    log "mimalloc built (max memory $MAX_BYTES bytes, arena reserve $MIMALLOC_ARENA_RESERVE_KIB KiB)"
  else
    rm -f "$out/mimalloc.wasm"
    log "mimalloc: clang failed: $err"; return 1
  fi
}

build_tlsf() {
  local asc="$root/node_modules/.bin/asc" err
  if [ ! -x "$asc" ]; then log "tlsf: assemblyscript is not installed (run npm install)"; return 1; fi
  if err="$(cd "$root" && "$asc" bench/peers/tlsf/index.ts -o "$out/tlsf.wasm" \
      --runtime minimal -O3 --noAssert --maximumMemory $MAX_PAGES 2>&1)"; then
    log "tlsf built (max memory $MAX_PAGES pages)"
  else
    rm -f "$out/tlsf.wasm"
    log "tlsf: asc failed: $err"; return 1
  fi
}

for p in $want; do
  case "$p" in
    dlmalloc) build_dlmalloc || status=1 ;;
    tlsf) build_tlsf || status=1 ;;
    mimalloc) build_mimalloc || status=1 ;;
    *) log "unknown peer $p"; status=1 ;;
  esac
done
exit $status
