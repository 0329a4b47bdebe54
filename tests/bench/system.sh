#!/usr/bin/env bash
# Benchmark (not a test) of the system inside the image, per architecture (default: all three;
# or pass some of amd64 arm64 s390x):
#   - the boot timeline from the console's kernel timestamps: PID 1 starts, onboot done, all
#     services started;
#   - the size of the minimal image's initrd without kernel modules, and of /init alone;
#   - the supervisor's RSS at rest (PID 1's VmRSS, read through the console shell);
#   - container start latency: 20 onboot containers running `sh -c :`, each timed by the
#     supervisor from start to exit (stage 1, namespaces, mounts, pivot_root, exec, exit).
# Boots run under TCG here (no KVM), so absolute times are far above hardware figures.
set -euo pipefail
cd "$(dirname "$0")/../.."
arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(amd64 arm64 s390x)
cargo build --release --locked -q -p osbuild
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
work=$(mktemp -d)
trap '[ -n "${OSBUILD_BENCH_KEEP:-}" ] || rm -rf "$work"' EXIT
cache=${OSBUILD_BENCH_CACHE:-$work/cache}

# A spec of 20 trivial onboot containers (busybox from pkg/getty, with that image's binds),
# merged with minimal.yml. Everything comes from this repository's packages: no registry.
{
  echo "onboot:"
  for i in $(seq -w 1 20); do
    printf '  - name: true%s\n    image: "@pkg:%s/pkg/getty"\n    command: ["/bin/sh", "-c", ":"]\n' "$i" "$PWD"
  done
} > "$work/latency.yml"

boot() { # arch name -> console log in $work/NAME-ARCH.log; types into the shell once ready
  local arch=$1 name=$2 log=$work/$2-$1.log
  local fifo=$work/in-$2-$1
  mkfifo "$fifo"
  "$bin/osbuild" run qemu --arch "$arch" --accel tcg --mem 1024 --no-network "$work/out/$name-$arch" \
    < "$fifo" > "$log" 2>&1 &
  local qemu=$!
  exec 9>"$fifo"
  for _ in $(seq 1 1800); do grep -q "all services started" "$log" && break; sleep 0.5; done
  sleep 5
  echo 'echo "rss-pid1: $(grep VmRSS /proc/1/status)"' >&9
  for _ in $(seq 1 120); do grep -q "^rss-pid1: VmRSS" "$log" && break; sleep 0.5; done
  printf '\001c' >&9; echo quit >&9
  exec 9>&-
  wait "$qemu" || true
}

stamp() { # log pattern -> the kernel timestamp of the first line matching
  grep -m1 -- "$2" "$1" | sed -n 's/^\[ *\([0-9.]*\)\].*/\1/p'
}

printf '%-6s %9s %9s %9s %9s %11s %11s %11s %9s\n' arch pid1_s onboot_s services_s rss_KiB \
  initrd_KiB nomods_KiB init_KiB start_ms
for arch in "${arches[@]}"; do
  mkdir -p "$work/out"
  "$bin/osbuild" build -q --cache "$cache" --arch "$arch" --dir "$work/out" \
    --name "minimal-$arch" examples/minimal.yml
  "$bin/osbuild" build -q --cache "$cache" --arch "$arch" --dir "$work/out" \
    --name "latency-$arch" examples/minimal.yml "$work/latency.yml"
  boot "$arch" minimal
  boot "$arch" latency
  log=$work/minimal-$arch.log
  pid1=$(stamp "$log" "init: osbuild init")
  onboot=$(stamp "$log" "init: onboot done")
  services=$(stamp "$log" "init: all services started")
  rss=$(sed -n 's/^rss-pid1: VmRSS:[[:space:]]*\([0-9]*\) kB.*/\1/p' "$log" | head -1)
  # Per-container latency: the supervisor's "done in" for the 20 trivial containers.
  start_ms=$( (grep -o "onboot [0-9]*-true[0-9]*: done in [0-9.]*s" "$work/latency-$arch.log" || true) \
    | awk '{gsub("s","",$NF); s+=$NF; n++} END {if (n) printf "%.1f", 1000*s/n; else print "-"}')
  # Initrd without modules: unpack, drop lib/modules, repack the same way (newc, gzip -9).
  x=$work/x-$arch; mkdir -p "$x"
  (cd "$x" && gzip -dc "$work/out/minimal-$arch-initrd.img" | cpio -id --quiet 2>/dev/null)
  rm -rf "$x/lib/modules"
  nomods=$(cd "$x" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -9 | wc -c)
  init=$(stat -c %s "$x/init")
  printf '%-6s %9s %9s %9s %9s %11d %11d %11d %9s\n' "$arch" "${pid1:--}" "${onboot:--}" \
    "${services:--}" "${rss:--}" "$(( $(stat -c %s "$work/out/minimal-$arch-initrd.img") / 1024 ))" \
    "$((nomods / 1024))" "$((init / 1024))" "$start_ms"
done
