#!/usr/bin/env bash
# Native mimalloc at every MI_SECURE level, for `node bench/secure.js --native`:
# what mimalloc's own secure mode costs on the same workloads.
#
# Builds bench/build/mimalloc-secure/l{0..4}/libmimalloc.so.2 from Debian's
# source package of the mimalloc the other native peers use (bookworm: 2.0.9),
# fetched with `apt-get source` through a private deb-src list (the system's
# apt configuration is not changed), each compiled the same way (gcc -O3,
# src/static.c, NDEBUG) with -DMI_SECURE=L. The native_micro_mimalloc and
# native_replay_mimalloc programs of bench/peers/build.sh then run against one
# of them through LD_LIBRARY_PATH. Prints the output directory; exits non-zero
# with a reason when something is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/../build/mimalloc-secure"
if [[ -f "$out/l4/libmimalloc.so.2" ]]; then echo "$out"; exit 0; fi
command -v gcc >/dev/null || { echo "gcc is missing (bash bench/peers/build.sh installs it)" >&2; exit 1; }
command -v apt-get >/dev/null || { echo "apt-get is missing: cannot fetch Debian's mimalloc source" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/src.sources" <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
mkdir -p "$work/lists/partial"
apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work" -o "Dir::State::Lists=$work/lists" -o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" update >"$work/update.log" 2>&1 || { echo "apt-get update (deb-src) failed: $(tail -n2 "$work/update.log")" >&2; exit 1; }
(cd "$work" && apt-get "${apt_opts[@]}" source --download-only mimalloc >"$work/source.log" 2>&1) ||
  { echo "apt-get source mimalloc failed: $(tail -n2 "$work/source.log")" >&2; exit 1; }
tar -C "$work" -xf "$work"/mimalloc_*.orig.tar.*
src="$(echo "$work"/mimalloc-*/)"
for level in 0 1 2 3 4; do
  mkdir -p "$out/l$level"
  gcc -O3 -fPIC -shared -DNDEBUG -DMI_SECURE=$level -DMI_SHARED_LIB -DMI_SHARED_LIB_EXPORT \
    -fvisibility=hidden -ftls-model=initial-exec -I "$src/include" "$src/src/static.c" \
    -Wl,-soname,libmimalloc.so.2 -o "$out/l$level/libmimalloc.so.2" -lpthread
done
basename "$src" > "$out/VERSION"
echo "$out"
