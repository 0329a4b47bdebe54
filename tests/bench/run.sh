#!/usr/bin/env bash
# Benchmark (not a test): wall time, CPU time and peak RSS of `osbuild build` for the standard
# specs on a warm cache, gzip and zstd, each disk format and each VM image, next to the time it takes merely
# to compress the same bytes with the same codec (the floor), and to anchors anyone can
# reproduce with standard tools: the uncompressed initrd (`--compress none`) compressed by
# `pigz -6 -p N` and `zstd -3 -T0` (N = the number of cores). Prints a table; run it before and
# after changes that could affect build speed or memory.
#
# BENCH_ONLY=REGEX runs only the builds whose name matches (the anchors need redis-full-none).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v /usr/bin/time >/dev/null || { apt-get install -y -q time >/dev/null; }
command -v pigz >/dev/null || { apt-get install -y -q pigz >/dev/null; }
only=${BENCH_ONLY:-.}
cargo build --release --locked -q -p osbuild -p osbuild-testenv
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin/osbuild-testenv" serve --all-modules --redis --ready-file "$work/addr" >/dev/null 2>"$work/serve.log" &
pid=$!
for _ in $(seq 1 1200); do [ -s "$work/addr" ] && break; kill -0 "$pid" || { cat "$work/serve.log"; exit 1; }; sleep 0.5; done
mirror="docker.io=http://$(cat "$work/addr")"
row() { # name wall user sys rss_KiB bytes
  printf '%-28s %8.2f %8.2f %9d %10d\n' "$1" "$2" "$(awk "BEGIN{print $3+$4}")" "$(($5 / 1024))" "$(($6 / 1024 / 1024))"
}
declare -A wall_of
build() { # name spec extra-args...
  local name=$1 spec=$2; shift 2
  [[ $name =~ $only ]] || return 0
  /usr/bin/time -f "%e %U %S %M" -o "$work/time" \
    "$bin/osbuild" build -q --cache "$work/cache" --mirror "$mirror" --dir "$work/out" --name "$name" "$@" "$spec"
  read -r wall user sys rss < "$work/time"
  # The disk space what the build wrote takes (sparse files count what they store), the
  # manifest aside.
  local bytes
  bytes=$(find "$work/out" -maxdepth 1 -type f \( -name "$name-*" -o -name "$name.*" \) ! -name '*.json' -printf '%b\n' | awk '{s+=$1*512} END{printf "%d", s}')
  row "$name" "$wall" "$user" "$sys" "$rss" "$bytes"
  wall_of[$name]=$wall
}
anchor() { # name output command...: time a standard tool writing to output
  local name=$1 out=$2; shift 2
  /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$@" > "$out"
  read -r wall user sys rss < "$work/time"
  row "$name" "$wall" "$user" "$sys" "$rss" "$(stat -c %s "$out")"
  wall_of[$name]=$wall
}
mkdir -p "$work/out"
echo "warming the cache..."
"$bin/osbuild" build -q --cache "$work/cache" --mirror "$mirror" --dir "$work/out" --name warm tests/bench/redis-full.yml
"$bin/osbuild" build -q --cache "$work/cache" --mirror "$mirror" --dir "$work/out" --name warm2 examples/services.yml
printf '%-28s %8s %8s %9s %10s\n' build wall_s cpu_s peak_MiB stored_MiB
build services-gzip examples/services.yml --compress gzip
build redis-full-none tests/bench/redis-full.yml --compress none
build redis-full-gzip tests/bench/redis-full.yml --compress gzip
build redis-full-zstd tests/bench/redis-full.yml --compress zstd
build services-raw-efi examples/services.yml -f raw-efi
build redis-full-raw-efi tests/bench/redis-full.yml -f raw-efi
build redis-full-iso-efi tests/bench/redis-full.yml -f iso-efi
build redis-full-squashfs tests/bench/redis-full.yml -f kernel+squashfs
# VM images: each container against raw-efi of the same spec; 10G disks show that the cost
# follows the data, not the disk's size.
build redis-full-qcow2-efi tests/bench/redis-full.yml -f qcow2-efi
build redis-full-qcow2-compr tests/bench/redis-full.yml -f qcow2-efi --compress-clusters
build redis-full-vhd tests/bench/redis-full.yml -f vhd
build redis-full-vhdx tests/bench/redis-full.yml -f vhdx
build redis-full-vmdk tests/bench/redis-full.yml -f vmdk
build redis-full-ova tests/bench/redis-full.yml -f ova
build redis-full-gcp tests/bench/redis-full.yml -f gcp
build redis-full-aws tests/bench/redis-full.yml -f aws
build redis-full-raw-efi-10G tests/bench/redis-full.yml -f raw-efi --size 10G
build redis-full-qcow2-10G tests/bench/redis-full.yml -f qcow2-efi --size 10G
build redis-full-vhdx-10G tests/bench/redis-full.yml -f vhdx --size 10G
build redis-full-vmdk-10G tests/bench/redis-full.yml -f vmdk --size 10G
cpio=$work/out/redis-full-none-initrd.img
[ -f "$cpio" ] || exit 0
# The floor: compress the uncompressed initrd's bytes alone, same codec, same compressor.
for codec in gzip zstd; do
  printf '%-28s %8s\n' "floor-$codec" "$("$bin/osbuild-testenv" compress "$codec" "$cpio")"
done
# The anchors: the same bytes through pigz and zstd on every core, and gzip -6 on one (the
# single-stream size the parallel gzip is held to).
anchor pigz-6-p$(nproc) "$work/anchor.gz" pigz -6 -p "$(nproc)" -c "$cpio"
anchor zstd-3-T0 "$work/anchor.zst" zstd -q -3 -T0 -c "$cpio"
anchor gzip-6 "$work/anchor1.gz" gzip -6 -c "$cpio"
rm -f "$work/anchor.gz" "$work/anchor.zst"
single=$(stat -c %s "$work/anchor1.gz")
rm -f "$work/anchor1.gz"
none=${wall_of[redis-full-none]}
ratio() { awk "BEGIN{printf \"%.2f\", $1 / $2}"; }
for codec in gzip zstd; do
  tool=pigz-6-p$(nproc)
  [ "$codec" = zstd ] && tool=zstd-3-T0
  built=${wall_of[redis-full-$codec]:-}
  [ -n "$built" ] || continue
  anchor_s=$(awk "BEGIN{print $none + ${wall_of[$tool]}}")
  printf '%-28s %8.2f  osbuild/anchor %s\n' "anchor-cpio+$tool" "$anchor_s" "$(ratio "$built" "$anchor_s")"
done
if [ -f "$work/out/redis-full-gzip-initrd.img" ]; then
  gz=$(stat -c %s "$work/out/redis-full-gzip-initrd.img")
  echo "initrd gzip size: $gz bytes, single-stream gzip -6: $single bytes, ratio $(awk "BEGIN{printf \"%.4f\", $gz / $single}")"
fi
echo "uncompressed initrd: $(( $(stat -c %s "$cpio") / 1024 / 1024 )) MiB; cores: $(nproc)"
