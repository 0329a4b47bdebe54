#!/usr/bin/env bash
# Build examples/hello.yml and boot it under QEMU, on a fresh Debian 12 machine.
#
# Installs what it needs (.ci/install-deps), builds osbuild, starts a registry on loopback
# holding pkg/kernel (built from Debian's kernels) and a busybox init image (osbuild-testenv
# serve), builds the example through it with --mirror, and boots the result with
# `osbuild run qemu`, printing the guest's console.
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/install-deps
cargo build --release --locked -p osbuild -p osbuild-testenv
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
trap 'kill "$registry_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin/osbuild-testenv" serve --ready-file "$work/registry" >/dev/null &
registry_pid=$!
for _ in $(seq 1 600); do
  [ -s "$work/registry" ] && break
  kill -0 "$registry_pid" 2>/dev/null || { echo "the fixture registry failed to start" >&2; exit 1; }
  sleep 0.5
done
addr=$(cat "$work/registry")
mkdir -p out
"$bin/osbuild" build --cache "$work/cache" --mirror "docker.io=http://$addr" --dir out examples/hello.yml
echo "booting out/hello under QEMU (osbuild run qemu); the guest powers off when done"
timeout 300 "$bin/osbuild" run qemu --mem 512 --no-network out/hello </dev/null | tee "$work/console.log"
grep -q "osbuild-init: done" "$work/console.log"
echo "demo: the image booted and its init ran"
