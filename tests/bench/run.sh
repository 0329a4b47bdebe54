#!/usr/bin/env bash
# Benchmark (not a test): wall time, CPU time and peak RSS of `osbuild build` for the standard
# specs on a warm cache, gzip and zstd, each disk format and each VM image, next to the time it takes merely
# to compress the same bytes with the same codec (the floor). Prints a table; run it before and
# after changes that could affect build speed or memory.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v /usr/bin/time >/dev/null || { apt-get install -y -q time >/dev/null; }
cargo build --release --locked -q -p osbuild -p osbuild-testenv
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin/osbuild-testenv" serve --all-modules --redis --ready-file "$work/addr" >/dev/null 2>"$work/serve.log" &
pid=$!
for _ in $(seq 1 1200); do [ -s "$work/addr" ] && break; kill -0 "$pid" || { cat "$work/serve.log"; exit 1; }; sleep 0.5; done
mirror="docker.io=http://$(cat "$work/addr")"
build() { # name spec extra-args...
  local name=$1 spec=$2; shift 2
  /usr/bin/time -f "%e %U %S %M" -o "$work/time" \
    "$bin/osbuild" build -q --cache "$work/cache" --mirror "$mirror" --dir "$work/out" --name "$name" "$@" "$spec"
  read -r wall user sys rss < "$work/time"
  # The disk space what the build wrote takes (sparse files count what they store), the
  # manifest aside.
  local bytes
  bytes=$(find "$work/out" -maxdepth 1 -type f \( -name "$name-*" -o -name "$name.*" \) ! -name '*.json' -printf '%b\n' | awk '{s+=$1*512} END{printf "%d", s}')
  printf '%-28s %8.2f %8.2f %9d %10d\n' "$name" "$wall" "$(awk "BEGIN{print $user+$sys}")" "$((rss / 1024))" \
    "$((bytes / 1024 / 1024))"
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
# The floor: compress the uncompressed initrd's bytes alone, same codec, same compressor.
for codec in gzip zstd; do
  printf '%-28s %8s\n' "floor-$codec" "$("$bin/osbuild-testenv" compress "$codec" "$work/out/redis-full-none-initrd.img")"
done
echo "uncompressed initrd: $(( $(stat -c %s "$work/out/redis-full-none-initrd.img") / 1024 / 1024 )) MiB; cores: $(nproc)"
